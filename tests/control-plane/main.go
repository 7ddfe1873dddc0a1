// Command control-plane runs a real Kubernetes control plane in one process:
// an embedded etcd and a kube-apiserver, both on 127.0.0.1, for certop's
// integration tests and demo. (`control-plane etcd ...` instead runs one TLS
// etcd that checks client certificates against a CRL, for revocation tests.)
// It generates its own PKI and credentials, writes a kubeconfig atomically
// once the API server is ready, prints one line saying where, and removes
// everything it created when it stops (SIGTERM, SIGINT, or its standard
// input closing with --exit-with-stdin).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// operatorUser is the identity the operator runs as in tests: the same user
// name a ServiceAccount token would carry, so the RBAC in manifests/ binds it.
const (
	operatorUser   = "system:serviceaccount:certop-system:certop"
	operatorGroups = "system:serviceaccounts,system:serviceaccounts:certop-system"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "etcd" {
		if err := runTLSEtcd(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "control-plane etcd: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "control-plane: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	dataDir        string
	port           int
	kubeconfig     string
	exitWithStdin  bool
	readyTimeout   time.Duration
	logFile        string
	pkiDir         string
	apiserverFlags stringList
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func run() error {
	var o options
	flag.StringVar(&o.dataDir, "data-dir", "", "directory for etcd data and generated PKI (default: a new temporary directory, removed on exit)")
	flag.IntVar(&o.port, "port", 0, "kube-apiserver's port (default: a free one); with --data-dir, a restart on the same port keeps every kubeconfig valid")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "where to write the admin kubeconfig (required); operator.kubeconfig is written beside it")
	flag.BoolVar(&o.exitWithStdin, "exit-with-stdin", false, "shut down when standard input closes, so the process never outlives its parent")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 3*time.Minute, "how long to wait for the API server to become ready")
	flag.StringVar(&o.logFile, "log-file", "", "file for etcd and kube-apiserver logs (default: standard error)")
	flag.StringVar(&o.pkiDir, "pki-dir", "", "serve with the certificates of this kubeadm-layout pki directory (certop pki init) instead of generated ones: etcd with TLS and client-certificate auth, kube-apiserver with its serving, client-CA, etcd-client, kubelet-client and front-proxy files")
	flag.Var(&o.apiserverFlags, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--v=2 (repeatable)")
	flag.Parse()
	if o.kubeconfig == "" {
		return errors.New("--kubeconfig is required")
	}
	kubeconfig, err := filepath.Abs(o.kubeconfig)
	if err != nil {
		return err
	}

	removeDataDir := false
	if o.dataDir == "" {
		d, err := os.MkdirTemp("", "certop-control-plane-")
		if err != nil {
			return err
		}
		o.dataDir, removeDataDir = d, true
	}
	defer func() {
		if removeDataDir {
			_ = os.RemoveAll(o.dataDir)
		}
	}()
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	if o.logFile != "" {
		f, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		// klog and etcd's zap logger both write to the process's stderr.
		if err := syscall.Dup2(int(f.Fd()), 2); err != nil {
			return fmt.Errorf("redirect logs: %w", err)
		}
	}

	creds, err := generateCredentials(filepath.Join(o.dataDir, "pki"))
	if err != nil {
		return fmt.Errorf("generate credentials: %w", err)
	}
	var etcdTLS *pkiFiles
	if o.pkiDir != "" {
		etcdTLS = usePKIDir(o.pkiDir, creds)
	}

	etcd, etcdURL, err := startEtcd(filepath.Join(o.dataDir, "etcd"), etcdTLS)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer etcd.Close()

	port := o.port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", port)

	cmd := app.NewAPIServerCommand()
	ctx := cmd.Context()
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(o.dataDir, "apiserver"),
		"--tls-cert-file=" + creds.servingCert,
		"--tls-private-key-file=" + creds.servingKey,
		"--client-ca-file=" + creds.caCert,
		"--token-auth-file=" + creds.tokenFile,
		"--service-account-key-file=" + creds.serviceAccountPub,
		"--service-account-signing-key-file=" + creds.serviceAccountKey,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=" + serviceRange(etcdTLS),
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	}
	if etcdTLS != nil {
		args = append(args, etcdTLS.apiserverFlags()...)
	}
	// A structured authorization configuration replaces the mode flag
	// (kube-apiserver refuses both); it is reloaded when the file changes.
	if !hasFlag(o.apiserverFlags, "--authorization-config") {
		args = append(args, "--authorization-mode=RBAC")
	}
	cmd.SetArgs(append(args, o.apiserverFlags...))

	served := make(chan error, 1)
	go func() { served <- cmd.Execute() }()

	if o.exitWithStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			// The API server owns the signal handler; ask it to stop the
			// way a supervisor would, so it shuts down gracefully.
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		}()
	}

	readyCtx, cancel := context.WithTimeout(ctx, o.readyTimeout)
	err = waitReady(readyCtx, server, creds, served)
	cancel()
	if err != nil {
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		<-served
		return err
	}
	if err := writeKubeconfigs(kubeconfig, server, creds); err != nil {
		return err
	}
	defer os.Remove(kubeconfig)
	defer os.Remove(operatorKubeconfigPath(kubeconfig))
	fmt.Printf("control plane ready: kubeconfig=%s server=%s etcd=%s\n", kubeconfig, server, etcdURL)

	if err := <-served; err != nil && ctx.Err() == nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

// freePort picks a loopback port from 10000-19999: below the kernel's
// ephemeral range, so no outgoing connection and no bind to port 0 takes it
// between this check and the listener's start, and apart from the ports the
// Rust tests pick (20000-31999). Control planes started at once pick
// randomly and check.
func freePort() (int, error) {
	for range 1000 {
		port := 10000 + rand.IntN(10000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free loopback port in 10000-19999")
}

func startEtcd(dir string, tls *pkiFiles) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "certop-test"
	cfg.Dir = dir
	scheme := "http"
	if tls != nil {
		scheme = "https"
	}
	clientURL := mustURL(fmt.Sprintf("%s://127.0.0.1:%d", scheme, clientPort))
	peerURL := mustURL(fmt.Sprintf("%s://127.0.0.1:%d", scheme, peerPort))
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	// Scale runs of 100,000 certificates write each ledger shard (up to a
	// few hundred KiB) thousands of times between kube-apiserver's
	// compactions: more history than etcd's default 2 GiB quota holds.
	cfg.QuotaBackendBytes = 8 << 30
	if tls != nil {
		tls.configureEtcd(cfg)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", err
	case <-time.After(time.Minute):
		e.Close()
		return nil, "", errors.New("etcd did not become ready within a minute")
	}
	return e, clientURL.String(), nil
}

// waitReady polls /readyz and then the default namespace, which the API
// server creates in a post-start hook; tests can rely on both.
func waitReady(ctx context.Context, server string, creds *credentials, served <-chan error) error {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(creds.caCert)
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	get := func(path string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+path, nil)
		if err != nil {
			return false
		}
		req.Header.Set("Authorization", "Bearer "+creds.adminToken)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for _, path := range []string{"/readyz", "/api/v1/namespaces/default"} {
		for !get(path) {
			select {
			case err := <-served:
				return fmt.Errorf("kube-apiserver exited before it was ready: %v", err)
			case <-ctx.Done():
				return fmt.Errorf("kube-apiserver not ready (%s): %w", path, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// hasFlag says whether flags set name (as name=value).
func hasFlag(flags []string, name string) bool {
	for _, f := range flags {
		if strings.HasPrefix(f, name+"=") {
			return true
		}
	}
	return false
}
