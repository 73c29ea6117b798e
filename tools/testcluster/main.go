// Command testcluster is a multi-call binary holding the real Kubernetes control
// plane components (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
// and kubectl, built from the published Go modules at one pinned release.
//
// It exists so the integration tests and the local demo run real upstream code
// without Docker or downloaded release binaries. One binary instead of five saves
// four link steps and most of the disk; each component still runs in its own
// process (sharing one process would share global state such as feature gates,
// klog flags and metric registries). The component is chosen by the name the
// binary is called by (symlinks) or by the first argument:
//
//	kube-apiserver --etcd-servers=...          # via a symlink
//	testcluster kube-apiserver --etcd-servers=...
package main

import (
	"fmt"
	"os"
	"path/filepath"

	_ "time/tzdata" // CronJob time zones, as upstream's mains do

	"go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

const usage = "usage: testcluster etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubectl [flags]"

func main() {
	if filepath.Base(os.Args[0]) == "testcluster" {
		if len(os.Args) < 2 {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		// Shift so every component sees the argv it would see as its own binary;
		// kubectl and etcd read os.Args directly.
		os.Args = os.Args[1:]
	}
	switch filepath.Base(os.Args[0]) {
	case "etcd":
		etcdmain.Main(os.Args)
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "kubectl":
		_, _ = logs.GlogSetter(kubectl.GetLogVerbosity(os.Args))
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown component %q\n%s\n", os.Args[0], usage)
		os.Exit(2)
	}
}
