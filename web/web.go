// Package web is the browser UI of troupe serve: a few static files (plain
// JavaScript, no build step, nothing fetched from elsewhere) embedded in the
// binary. The UI routes with the URL hash (#/jobs/7), so the server only
// ever serves "/" and the assets; everything else comes from the REST and
// WebSocket API of docs/api.md.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// csp allows only this origin: scripts, styles, fetches and WebSockets.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the UI: index.html at "/", app.js, style.css.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("web: embedded static files: " + err.Error()) // cannot happen: the directory is embedded
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// The files have no modification time in the binary: make the
		// browser revalidate, so a new server version is seen at once.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
