// Karpenter for the sdworker rig: upstream Karpenter's controllers (sigs.k8s.io/karpenter) with a
// GCE-shaped provider (provider.go) in place of upstream kwok's in-apiserver fake, so that nodes
// an autoscaler adds are backed by instances in the compute API the operator uses.
//
// main follows sigs.k8s.io/karpenter/kwok/main.go, with two changes: the provider, and every
// server the controller manager opens (metrics, health probes, pprof) binds 127.0.0.1, where
// upstream binds all interfaces (":PORT", pkg/operator/operator.go).
//
// Configuration is Karpenter's own (flags or environment: KUBECONFIG, DISABLE_LEADER_ELECTION,
// METRICS_PORT, HEALTH_PROBE_PORT, INSTANCE_TYPES_FILE_PATH, ...) plus the options below.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/samber/lo"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	kwok "sigs.k8s.io/karpenter/kwok/cloudprovider"
	"sigs.k8s.io/karpenter/pkg/cloudprovider/overlay"
	"sigs.k8s.io/karpenter/pkg/controllers"
	"sigs.k8s.io/karpenter/pkg/controllers/node/health"
	"sigs.k8s.io/karpenter/pkg/controllers/state"
	"sigs.k8s.io/karpenter/pkg/operator"
	coreoptions "sigs.k8s.io/karpenter/pkg/operator/options"
	"sigs.k8s.io/karpenter/pkg/utils/env"
)

// Options are this provider's flags, parsed with Karpenter's (an options.Injectable).
type Options struct {
	ComputeEndpoint string // .../compute/v1/ of the compute API (the simulator's api_base)
	Project         string
	ClusterName     string // a label on the instances, so List sees only this cluster's
}

type optionsKey struct{}

func (o *Options) AddFlags(fs *coreoptions.FlagSet) {
	fs.StringVar(&o.ComputeEndpoint, "compute-endpoint", env.WithDefaultString("COMPUTE_ENDPOINT", ""), "Base URL of the Compute Engine v1 API, ending in /compute/v1/")
	fs.StringVar(&o.Project, "gce-project", env.WithDefaultString("GCE_PROJECT", ""), "GCE project the instances are created in")
	fs.StringVar(&o.ClusterName, "cluster-name", env.WithDefaultString("CLUSTER_NAME", "sdworker"), "Cluster name, set as a label on every instance")
}

func (o *Options) Parse(fs *coreoptions.FlagSet, args ...string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		return fmt.Errorf("parsing flags, %w", err)
	}
	if o.ComputeEndpoint == "" {
		return errors.New("--compute-endpoint (COMPUTE_ENDPOINT) is required")
	}
	if o.Project == "" {
		return errors.New("--gce-project (GCE_PROJECT) is required")
	}
	if LabelValue(o.ClusterName) != o.ClusterName || o.ClusterName == "" {
		return fmt.Errorf("--cluster-name (CLUSTER_NAME) %q must be a GCE label value (lowercase letters, digits, '-', '_')", o.ClusterName)
	}
	return nil
}

func (o *Options) ToContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, optionsKey{}, o)
}

func optionsFrom(ctx context.Context) *Options {
	return ctx.Value(optionsKey{}).(*Options)
}

func init() {
	coreoptions.Injectables = append(coreoptions.Injectables, &Options{})
}

// loopback turns ":8080" (all interfaces) into "127.0.0.1:8080"; "" and "0" (disabled) stay.
func loopback(addr string) string {
	if addr == "" || addr == "0" {
		return addr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

func main() {
	// operator.NewOperator builds its manager through ctrl.NewManager with ":PORT" addresses.
	ctrl.NewManager = func(cfg *rest.Config, o manager.Options) (manager.Manager, error) {
		o.Metrics.BindAddress = loopback(o.Metrics.BindAddress)
		o.HealthProbeBindAddress = loopback(o.HealthProbeBindAddress)
		o.PprofBindAddress = loopback(o.PprofBindAddress)
		return manager.New(cfg, o)
	}
	ctx, op := operator.NewOperator()
	opts := optionsFrom(ctx)
	instanceTypes, err := kwok.ConstructInstanceTypes(ctx)
	if err != nil {
		log.FromContext(ctx).Error(err, "failed constructing instance types")
		os.Exit(1)
	}
	base := kwok.NewCloudProvider(ctx, op.GetClient(), instanceTypes)
	provider := NewProvider(base, op.GetClient(), NewCompute(opts.ComputeEndpoint, opts.Project), opts, instanceTypes)
	cloudProvider := overlay.Decorate(provider, op.GetClient(), op.InstanceTypeStore)
	repairPolicyMatcher := lo.Must(health.NewRepairPolicyMatcher(ctx, cloudProvider))
	clusterState := state.NewCluster(op.Clock, op.GetClient(), cloudProvider, state.WithRepairPolicyMatcher(repairPolicyMatcher))
	log.FromContext(ctx).Info("gce-shaped kwok provider", "compute-endpoint", opts.ComputeEndpoint, "project", opts.Project, "cluster", opts.ClusterName, "instance-types", len(instanceTypes))
	op.
		WithControllers(ctx, controllers.NewControllers(
			ctx,
			op.Manager,
			op.Clock,
			op.GetClient(),
			op.EventRecorder,
			cloudProvider,
			provider,
			clusterState,
			op.InstanceTypeStore,
			op.PredictionStore,
		)...).Start(ctx)
}
