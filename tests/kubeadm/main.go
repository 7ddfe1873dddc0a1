// kubeadm v1.36.3, built from the same Go modules as the test control
// plane, so certop's node PKI can be compared with kubeadm's own output
// and each can read and renew the other's tree (tests/kubeadm_parity.rs).
package main

import (
	"k8s.io/kubernetes/cmd/kubeadm/app"
	kubeadmerrors "k8s.io/kubernetes/cmd/kubeadm/app/util/errors"
)

func main() {
	kubeadmerrors.HandleError(app.Run())
}
