// The real kubelet v1.36.3, built from the same Go modules as the test
// control plane, plus the upstream in-memory fake container runtime it talks
// to (the one kubemark's hollow nodes use): one binary, so `make test` builds
// and caches one thing. `NAME fake-cri --endpoint unix:///PATH` serves the
// fake CRI until killed; any other arguments are the kubelet's own. Used by
// tests/integration/kubelet_revocation.rs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	fakecri "k8s.io/cri-client/pkg/fake"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "fake-cri" {
		os.Exit(serveFakeCRI(os.Args[2:]))
	}
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}

// serveFakeCRI serves the fake runtime and image services on a unix socket
// until SIGTERM or SIGINT; it prints "ready" once the socket accepts.
func serveFakeCRI(args []string) int {
	flags := flag.NewFlagSet("fake-cri", flag.ContinueOnError)
	endpoint := flags.String("endpoint", "", "unix:///PATH of the socket to serve")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "fake-cri: --endpoint unix:///PATH is required")
		return 2
	}
	runtime := fakecri.NewFakeRemoteRuntime()
	if err := runtime.Start(*endpoint); err != nil {
		fmt.Fprintf(os.Stderr, "fake-cri: serving %s: %v\n", *endpoint, err)
		return 1
	}
	fmt.Println("ready")
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	runtime.Stop()
	return 0
}
