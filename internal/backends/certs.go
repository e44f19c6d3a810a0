package backends

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCerts is a throwaway PKI for one test: a CA, a server certificate for 127.0.0.1, ::1 and
// localhost, and a client certificate (CN "caddy-conflict-test-client"), all signed by the CA, as PEM
// files (ECDSA P-256 keys in PKCS #8, mode 0600) that servers like redis-server read.
type TestCerts struct {
	Dir                           string // the folder of the files (the test's temp dir)
	CAFile                        string // ca.pem
	ServerCertFile, ServerKeyFile string // server.pem, server-key.pem
	ClientCertFile, ClientKeyFile string // client.pem, client-key.pem

	CAPool *x509.CertPool // holds the CA alone
	Server tls.Certificate
	Client tls.Certificate
}

// NewTestCerts generates a CA and the server and client certificates it signs (valid from an hour
// ago for a day) and writes them under a new temp dir of t.
func NewTestCerts(t testing.TB) *TestCerts {
	t.Helper()
	fail := func(err error) {
		t.Helper()
		t.Fatalf("backends: test certificates: %v", err)
	}
	dir := t.TempDir()
	c := &TestCerts{
		Dir:            dir,
		CAFile:         filepath.Join(dir, "ca.pem"),
		ServerCertFile: filepath.Join(dir, "server.pem"),
		ServerKeyFile:  filepath.Join(dir, "server-key.pem"),
		ClientCertFile: filepath.Join(dir, "client.pem"),
		ClientKeyFile:  filepath.Join(dir, "client-key.pem"),
		CAPool:         x509.NewCertPool(),
	}
	now := time.Now()
	template := func(cn string) *x509.Certificate {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		if err != nil {
			fail(err)
		}
		return &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"caddy-conflict tests"}},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
		}
	}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fail(err)
	}
	ca := template("caddy-conflict test CA")
	ca.IsCA, ca.BasicConstraintsValid = true, true
	ca.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		fail(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		fail(err)
	}
	c.CAPool.AddCert(caCert)
	if err := writePEM(c.CAFile, "CERTIFICATE", caDER); err != nil {
		fail(err)
	}

	leaf := func(tmpl *x509.Certificate, certFile, keyFile string) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			fail(err)
		}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			fail(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			fail(err)
		}
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			fail(err)
		}
		if err := writePEM(keyFile, "PRIVATE KEY", keyDER); err != nil {
			fail(err)
		}
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			fail(err)
		}
		return pair
	}
	server := template("localhost")
	server.DNSNames = []string{"localhost"}
	server.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	c.Server = leaf(server, c.ServerCertFile, c.ServerKeyFile)
	client := template("caddy-conflict-test-client")
	client.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	c.Client = leaf(client, c.ClientCertFile, c.ClientKeyFile)
	return c
}

// ClientConfig is a TLS client configuration that trusts the CA alone (for server name serverName,
// e.g. "127.0.0.1" or "localhost"; "" means 127.0.0.1), presenting the client certificate when
// withClientCert.
func (c *TestCerts) ClientConfig(serverName string, withClientCert bool) *tls.Config {
	if serverName == "" {
		serverName = "127.0.0.1"
	}
	cfg := &tls.Config{RootCAs: c.CAPool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if withClientCert {
		cfg.Certificates = []tls.Certificate{c.Client}
	}
	return cfg
}

// ServerConfig is a TLS server configuration with the server certificate that asks for client
// certificates signed by the CA (and accepts clients without one: like --tls-auth-clients optional).
func (c *TestCerts) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.Server}, ClientCAs: c.CAPool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
}

func writePEM(path, blockType string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600)
}
