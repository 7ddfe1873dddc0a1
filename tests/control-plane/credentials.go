package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// credentials are the files and secrets the control plane generates for
// itself at its first start in a data directory; a restart on the same
// directory (--data-dir) reuses them, so kubeconfigs written before it,
// the operator's included, stay valid.
type credentials struct {
	caCert            string
	servingCert       string
	servingKey        string
	serviceAccountKey string
	serviceAccountPub string
	tokenFile         string
	adminToken        string
	operatorToken     string
}

func generateCredentials(dir string) (*credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &credentials{
		caCert:            filepath.Join(dir, "ca.crt"),
		servingCert:       filepath.Join(dir, "apiserver.crt"),
		servingKey:        filepath.Join(dir, "apiserver.key"),
		serviceAccountKey: filepath.Join(dir, "sa.key"),
		serviceAccountPub: filepath.Join(dir, "sa.key"),
		tokenFile:         filepath.Join(dir, "tokens.csv"),
	}
	if reused, err := reuseCredentials(c); err != nil || reused {
		return c, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "certop test control plane CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	servingTemplate := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTemplate, ca, &servingKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c.adminToken, c.operatorToken = randomToken(), randomToken()
	tokens := strings.Join([]string{
		fmt.Sprintf("%s,admin,admin,system:masters", c.adminToken),
		fmt.Sprintf("%s,%s,certop-operator,\"%s\"", c.operatorToken, operatorUser, operatorGroups),
	}, "\n") + "\n"

	for _, f := range []struct {
		path string
		data []byte
	}{
		{c.caCert, pemBlock("CERTIFICATE", caDER)},
		{c.servingCert, pemBlock("CERTIFICATE", servingDER)},
		{c.servingKey, mustMarshalKey(servingKey)},
		{c.serviceAccountKey, mustMarshalKey(saKey)},
		{c.tokenFile, []byte(tokens)},
	} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// reuseCredentials reads the tokens of an earlier start when all of its
// files are there; it reports false (generate anew) when none is.
func reuseCredentials(c *credentials) (bool, error) {
	present := 0
	for _, f := range []string{c.caCert, c.servingCert, c.servingKey, c.serviceAccountKey, c.tokenFile} {
		if _, err := os.Stat(f); err == nil {
			present++
		}
	}
	switch present {
	case 0:
		return false, nil
	case 5:
	default:
		return false, fmt.Errorf("%s holds only some of the control plane's credentials; remove it or restore them", filepath.Dir(c.caCert))
	}
	tokens, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(tokens)), "\n") {
		fields := strings.SplitN(line, ",", 3)
		if len(fields) < 3 {
			return false, fmt.Errorf("%s: a line without token,user,uid", c.tokenFile)
		}
		switch fields[1] {
		case "admin":
			c.adminToken = fields[0]
		case operatorUser:
			c.operatorToken = fields[0]
		}
	}
	if c.adminToken == "" || c.operatorToken == "" {
		return false, fmt.Errorf("%s lacks the admin or operator token", c.tokenFile)
	}
	return true, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func mustMarshalKey(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}

func operatorKubeconfigPath(adminKubeconfig string) string {
	return filepath.Join(filepath.Dir(adminKubeconfig), "operator.kubeconfig")
}

// writeKubeconfigs writes the admin kubeconfig (contexts "admin" and
// "certop-operator") and an operator-only kubeconfig beside it. Each is
// written to a temporary file and renamed, so a reader never sees half of one.
func writeKubeconfigs(adminPath, server string, c *credentials) error {
	caPEM, err := os.ReadFile(c.caCert)
	if err != nil {
		return err
	}
	admin := kubeconfig(server, caPEM, "admin", []user{
		{"admin", c.adminToken}, {"certop-operator", c.operatorToken},
	})
	operator := kubeconfig(server, caPEM, "certop-operator", []user{{"certop-operator", c.operatorToken}})
	if err := writeAtomically(operatorKubeconfigPath(adminPath), operator); err != nil {
		return err
	}
	return writeAtomically(adminPath, admin)
}

type user struct{ name, token string }

func kubeconfig(server string, caPEM []byte, current string, users []user) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: certop-test\n  cluster:\n    server: %s\n    certificate-authority-data: %s\n",
		server, base64.StdEncoding.EncodeToString(caPEM))
	b.WriteString("users:\n")
	for _, u := range users {
		fmt.Fprintf(&b, "- name: %s\n  user:\n    token: %s\n", u.name, u.token)
	}
	b.WriteString("contexts:\n")
	for _, u := range users {
		fmt.Fprintf(&b, "- name: %s\n  context:\n    cluster: certop-test\n    user: %s\n    namespace: default\n", u.name, u.name)
	}
	fmt.Fprintf(&b, "current-context: %s\n", current)
	return []byte(b.String())
}

func writeAtomically(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kubeconfig-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
