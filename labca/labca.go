// Package labca is the lab's certificate authority: it makes the CA and the
// server's certificate, issues workers' certificates (crypto/x509), and
// builds the mutual-TLS configurations of the server and the workers. A
// certificate's common name is its holder's name: "server", or the worker's.
package labca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// ServerName is the common name of the server's certificate.
const ServerName = "server"

// validity of the certificates made here.
const validity = 5 * 365 * 24 * time.Hour

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// CheckName refuses a worker name that cannot name a certificate file or
// collides with the CA's or the server's.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("worker name %q: want 1-63 of a-z 0-9 _ . - starting with a letter or digit", name)
	}
	if name == "ca" || name == ServerName {
		return fmt.Errorf("worker name %q is reserved", name)
	}
	return nil
}

// Init makes the lab CA (ca.pem, ca-key.pem) and the server's certificate
// (server.pem, server-key.pem) in dir. It refuses a dir that has a CA.
func Init(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err == nil {
		return fmt.Errorf("ca init: %s already has a CA", dir)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "troupe lab CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	if err := writePair(dir, "ca", der, key); err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	return issue(dir, ServerName)
}

// Issue adds worker name's certificate and key (NAME.pem, NAME-key.pem) to
// dir, signed by its CA.
func Issue(dir, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, name+".pem")); err == nil {
		return fmt.Errorf("ca issue: %s already has a certificate for %s", dir, name)
	}
	return issue(dir, name)
}

func issue(dir, name string) error {
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return fmt.Errorf("ca issue %s: %w", name, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca issue %s: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Both ends of a protoactor remote listen and dial.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("ca issue %s: %w", name, err)
	}
	if err := writePair(dir, name, der, key); err != nil {
		return fmt.Errorf("ca issue %s: %w", name, err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("lab CA: %w", err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("lab CA: key is not ECDSA")
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("lab CA: %w", err)
	}
	return cert, key, nil
}

// Config is the mutual-TLS configuration of one end (server or worker):
// it presents its own certificate and accepts only peers with a
// certificate of the lab CA (and, when accept is not nil, a name it
// accepts). Refusals are logged. Host names are not checked: a peer's
// identity is its certificate's common name.
func Config(dir, name string, accept func(peer string) bool, logger *slog.Logger) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("certificate of %s: %w", name, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("lab CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("lab CA: no certificate in %s", filepath.Join(dir, "ca.pem"))
	}
	verify := func(cs tls.ConnectionState) error {
		peer, err := Verify(pool, cs.PeerCertificates)
		if err == nil && accept != nil && !accept(peer) {
			err = fmt.Errorf("peer %q is not accepted here", peer)
		}
		if err != nil {
			logger.Warn("TLS peer refused", "err", err)
		}
		return err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		// Server side: ask for a certificate, verify it below (so that a
		// refusal is logged); client side: verify the chain below, not
		// the host name.
		ClientAuth:         tls.RequestClientCert,
		InsecureSkipVerify: true, //nolint:gosec // the chain is verified in VerifyConnection
		VerifyConnection:   verify,
	}, nil
}

// Verify checks a peer's certificate chain against the lab CA and returns
// the peer's name.
func Verify(pool *x509.CertPool, certs []*x509.Certificate) (string, error) {
	if len(certs) == 0 {
		return "", errors.New("peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", fmt.Errorf("peer %q: certificate not from the lab CA: %w", certs[0].Subject.CommonName, err)
	}
	return certs[0].Subject.CommonName, nil
}

// PeerName is the name in a verified peer's certificate ("" without one).
func PeerName(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}
