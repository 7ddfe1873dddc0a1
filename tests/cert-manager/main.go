// cert-manager's certificate controllers and CA issuer (v1.21.x, from the
// main module's packages), for `make bench-compare` only: upstream's
// cmd/controller is a module the Go proxy does not serve, so this main
// wires the same controllers with the same defaults (5 workers, QPS 20,
// burst 50, CertificateRequest back-off 1h to 32h). Left out: ACME, Vault
// and Venafi issuers, the ingress/gateway shims, leader election and the
// webhook (the benchmark creates only valid objects).
//
//	cert-manager-controller [--kubeconfig F] [--kube-api-qps 20] [--kube-api-burst 50]
//	cert-manager-controller renew-all [--kubeconfig F]   what `cmctl renew --all` does
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	cmutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	certificatesmetrics "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// The controllers cert-manager enables by default, less those of the
// issuers and shims left out above.
var enabled = []string{
	issuers.ControllerName,
	clusterissuers.ControllerName,
	certificatesmetrics.ControllerName,
	approver.ControllerName,
	crca.CRControllerName,
	crselfsigned.CRControllerName,
	trigger.ControllerName,
	issuing.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "renew-all" {
		fs := flag.NewFlagSet("renew-all", flag.ExitOnError)
		kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
		_ = fs.Parse(os.Args[2:])
		if err := renewAll(*kubeconfig); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	qps := flag.Float64("kube-api-qps", 20, "client-side QPS (cert-manager's default)")
	burst := flag.Int("kube-api-burst", 50, "client-side burst (cert-manager's default)")
	workers := flag.Int("workers", 5, "workers per controller (cert-manager's default)")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "kube-system", "where ClusterIssuers' Secrets live")
	flag.Parse()
	if err := run(*kubeconfig, float32(*qps), *burst, *workers, *clusterResourceNamespace); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(kubeconfig string, qps float32, burst, workers int, clusterResourceNamespace string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   qps,
		KubernetesAPIBurst: burst,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        clusterResourceNamespace,
			ClusterIssuerAmbientCredentials: true,
		},
		CertificateOptions: controller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return err
	}
	base, err := factory.Build()
	if err != nil {
		return err
	}
	known := controller.Known()
	var wg sync.WaitGroup
	errs := make(chan error, len(enabled))
	for _, name := range enabled {
		constructor, ok := known[name]
		if !ok {
			return fmt.Errorf("controller %s is not registered", name)
		}
		iface, err := constructor(factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := iface.Run(workers, ctx); err != nil {
				errs <- fmt.Errorf("controller %s: %w", name, err)
			}
		}()
	}
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	fmt.Fprintf(os.Stderr, "cert-manager controllers running: %v (qps %v, burst %d)\n", enabled, qps, burst)
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}

// renewAll marks every Certificate Issuing=True, ManuallyTriggered, as
// `cmctl renew --all` does.
func renewAll(kubeconfig string) error {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	config.QPS, config.Burst = 1000, 2000
	client, err := cmclient.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx := context.Background()
	list, err := client.CertmanagerV1().Certificates("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range list.Items {
		crt := &list.Items[i]
		cmutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
			"ManuallyTriggered", "Certificate re-issuance manually triggered")
		if _, err := client.CertmanagerV1().Certificates(crt.Namespace).UpdateStatus(ctx, crt, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("certificate %s/%s: %w", crt.Namespace, crt.Name, err)
		}
	}
	fmt.Printf("renewal of %d certificates requested\n", len(list.Items))
	return nil
}
