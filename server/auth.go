package server

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// Roles, weakest first.
const (
	Viewer    = "viewer"
	Submitter = "submitter"
	Admin     = "admin"
)

var rank = map[string]int{Viewer: 1, Submitter: 2, Admin: 3}

// Token is one API client.
type Token struct {
	Name   string
	Secret string
	Role   string
}

// LoadTokens reads a tokens file:
//
//	[[token]]
//	name = "ci"
//	secret = "..."
//	role = "submitter"    # viewer | submitter | admin
func LoadTokens(path string) ([]Token, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return ParseTokens(path, data)
}

// ParseTokens parses the tokens file data read from file.
func ParseTokens(file string, data []byte) ([]Token, error) {
	doc, root, err := tomlfile.Parse(file, data)
	if err != nil {
		return nil, err
	}
	root.Only("token")
	root.Require("token")
	tables, _ := root.Tables("token")
	var ts []Token
	names, secrets := map[string]bool{}, map[string]bool{}
	for _, t := range tables {
		t.Only("name", "secret", "role")
		t.Require("name", "secret", "role")
		var tok Token
		tok.Name, _ = t.String("name")
		tok.Secret, _ = t.String("secret")
		tok.Role = t.OneOf("role", Viewer, Submitter, Admin)
		switch {
		case t.Has("secret") && len(tok.Secret) < 16:
			t.Errorf("secret", "too short: at least 16 characters")
		case secrets[tok.Secret] && tok.Secret != "":
			t.Errorf("secret", "used by another token")
		}
		if names[tok.Name] {
			t.Errorf("name", "%q: used by another token", tok.Name)
		}
		names[tok.Name], secrets[tok.Secret] = true, true
		ts = append(ts, tok)
	}
	if err := doc.Err(); err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%s: no [[token]]", file)
	}
	return ts, nil
}

// caller is who made a request: a token's name, or "local" without auth.
type caller struct {
	name string
	role string
}

// authenticate finds the caller of r. The secret comes from the
// Authorization header, or on the WebSocket routes (ws: browsers cannot
// set headers on them) from the token query parameter of an upgrade.
// Secrets are compared in constant time against every token, and never
// logged.
func (s *Server) authenticate(r *http.Request, ws bool) (caller, bool) {
	if s.tokens == nil {
		return caller{name: "local", role: Admin}, true
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok && ws && r.Header.Get("Authorization") == "" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		secret, ok = r.URL.Query().Get("token"), true
	}
	if !ok || secret == "" {
		return caller{}, false
	}
	var found *Token
	for i := range s.tokens {
		if subtle.ConstantTimeCompare([]byte(secret), []byte(s.tokens[i].Secret)) == 1 {
			found = &s.tokens[i]
		}
	}
	if found == nil {
		return caller{}, false
	}
	return caller{name: found.Name, role: found.Role}, true
}

// allow wraps h so that only callers of at least role reach it.
func (s *Server) allow(role string, h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return s.allowWith(role, false, h)
}

// allowWebSocket is allow for a WebSocket route: the token may come as
// ?token=.
func (s *Server) allowWebSocket(role string, h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return s.allowWith(role, true, h)
}

func (s *Server) allowWith(role string, ws bool, h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.authenticate(r, ws)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="troupe"`)
			writeError(w, http.StatusUnauthorized, "missing or unknown token")
			return
		}
		if rank[c.role] < rank[role] {
			writeError(w, http.StatusForbidden, fmt.Sprintf("token %q is a %s; this needs a %s", c.name, c.role, role))
			return
		}
		h(w, r, c)
	}
}
