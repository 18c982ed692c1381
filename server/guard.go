package server

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// ClientHeader marks a request as sent by a troupe client (the CLI, the
// web UI). A web page of another site cannot send it without a CORS
// preflight, which the server never grants.
const ClientHeader = "X-Troupe-Client"

// bodyTypes are the media types a state-changing request may carry
// without ClientHeader: none of them is one a cross-site form or a
// preflight-free fetch can send (text/plain, multipart/form-data,
// application/x-www-form-urlencoded).
var bodyTypes = map[string]bool{
	"application/toml":   true,
	"application/yaml":   true,
	"application/x-yaml": true,
	"application/json":   true,
}

// guard refuses what a web page of another site, or one reached through
// a rebound DNS name, could make a browser send:
//   - a state-changing request whose Origin is not the server itself;
//   - without tokens (the browser's loopback is the only credential): a
//     Host that is not a loopback name or address, and a state-changing
//     request with neither ClientHeader nor a Content-Type of bodyTypes.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenless := s.tokens == nil
		if tokenless && !loopbackHost(r.Host) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("host %q: a server without tokens answers only to a loopback host (localhost, 127.0.0.1, [::1])", r.Host))
			return
		}
		if !websocket.IsWebSocketUpgrade(r) {
			// A body that trickles in is cut off: it would hold a
			// connection and a handler as long as the client likes. (A
			// WebSocket keeps its connection; its reads have their own
			// limits.)
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.Limits.BodyTimeout))
		}
		if safeMethod(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("origin %q: cross-site requests may not change anything", o))
			return
		}
		if tokenless && r.Header.Get(ClientHeader) == "" && !bodyTypes[mediaType(r)] {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf(
				"Content-Type %q: send application/toml, application/yaml or application/json, or the %s header", r.Header.Get("Content-Type"), ClientHeader))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// loopbackHost tells whether a Host header names this machine's loopback.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sameOrigin tells whether an Origin header names the host the request
// was sent to ("null" and unparsable origins do not).
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

func mediaType(r *http.Request) string {
	t, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return t
}
