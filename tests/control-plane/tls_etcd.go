package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// runTLSEtcd runs a single etcd that serves clients over TLS, requires a
// client certificate from --client-ca-file and refuses certificates that
// --client-crl-file (DER, re-read on every handshake) revokes: a consumer of
// certop's certificates and CRLs that certop did not write.
func runTLSEtcd(args []string) error {
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	certFile := fs.String("cert-file", "", "serving certificate (PEM)")
	keyFile := fs.String("key-file", "", "serving key (PEM)")
	caFile := fs.String("client-ca-file", "", "CA that client certificates must chain to")
	crlFile := fs.String("client-crl-file", "", "CRL (DER) of revoked client certificates")
	exitWithStdin := fs.Bool("exit-with-stdin", false, "shut down when standard input closes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *certFile == "" || *keyFile == "" || *caFile == "" {
		return errors.New("--cert-file, --key-file and --client-ca-file are required")
	}
	dir, err := os.MkdirTemp("", "certop-etcd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name = "certop-tls-etcd"
	cfg.Dir = filepath.Join(dir, "data")
	clientURL := mustURL(fmt.Sprintf("https://127.0.0.1:%d", clientPort))
	peerURL := mustURL(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	cfg.ClientTLSInfo.CertFile = *certFile
	cfg.ClientTLSInfo.KeyFile = *keyFile
	cfg.ClientTLSInfo.TrustedCAFile = *caFile
	cfg.ClientTLSInfo.ClientCertAuth = true
	cfg.ClientTLSInfo.CRLFile = *crlFile
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-time.After(time.Minute):
		return errors.New("etcd did not become ready within a minute")
	}
	fmt.Printf("etcd ready: url=%s\n", clientURL.String())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	stdinClosed := make(chan struct{})
	if *exitWithStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(stdinClosed)
		}()
	}
	select {
	case <-stop:
	case <-stdinClosed:
	case err := <-e.Err():
		return err
	}
	return nil
}
