package main

import (
	"path/filepath"

	"go.etcd.io/etcd/server/v3/embed"
)

// pkiFiles are the files of a kubeadm-layout pki directory, as written by
// `certop pki init`: the control plane then runs on certop's certificates,
// so the tests can show that the real components accept them.
type pkiFiles struct{ dir string }

// usePKIDir points the API server's serving certificate, client CA and
// service-account keys at the directory; tokens stay generated (setup only).
func usePKIDir(dir string, creds *credentials) *pkiFiles {
	p := &pkiFiles{dir: dir}
	creds.caCert = p.path("ca.crt")
	creds.servingCert = p.path("apiserver.crt")
	creds.servingKey = p.path("apiserver.key")
	creds.serviceAccountKey = p.path("sa.key")
	creds.serviceAccountPub = p.path("sa.pub")
	return p
}

func (p *pkiFiles) path(rel string) string { return filepath.Join(p.dir, rel) }

// configureEtcd serves clients and peers over TLS with certop's etcd
// certificates and requires client certificates from the etcd CA.
func (p *pkiFiles) configureEtcd(cfg *embed.Config) {
	cfg.ClientTLSInfo.CertFile = p.path("etcd/server.crt")
	cfg.ClientTLSInfo.KeyFile = p.path("etcd/server.key")
	cfg.ClientTLSInfo.TrustedCAFile = p.path("etcd/ca.crt")
	cfg.ClientTLSInfo.ClientCertAuth = true
	cfg.PeerTLSInfo.CertFile = p.path("etcd/peer.crt")
	cfg.PeerTLSInfo.KeyFile = p.path("etcd/peer.key")
	cfg.PeerTLSInfo.TrustedCAFile = p.path("etcd/ca.crt")
	cfg.PeerTLSInfo.ClientCertAuth = true
}

// apiserverFlags are kubeadm's kube-apiserver flags for the pki files.
func (p *pkiFiles) apiserverFlags() []string {
	return []string{
		"--etcd-cafile=" + p.path("etcd/ca.crt"),
		"--etcd-certfile=" + p.path("apiserver-etcd-client.crt"),
		"--etcd-keyfile=" + p.path("apiserver-etcd-client.key"),
		"--kubelet-client-certificate=" + p.path("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + p.path("apiserver-kubelet-client.key"),
		"--requestheader-client-ca-file=" + p.path("front-proxy-ca.crt"),
		"--proxy-client-cert-file=" + p.path("front-proxy-client.crt"),
		"--proxy-client-key-file=" + p.path("front-proxy-client.key"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
	}
}

// serviceRange is kubeadm's default with certop's certificates (their SANs
// hold its first address), else the small range of the generated setup.
func serviceRange(p *pkiFiles) string {
	if p != nil {
		return "10.96.0.0/12"
	}
	return "10.0.0.0/24"
}
