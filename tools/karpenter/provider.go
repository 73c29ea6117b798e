// A Karpenter cloud provider that launches "GCE" instances through the compute API and registers
// kwok Nodes for them, so an autoscaler's scale-out and scale-in reach the same cloud the
// sdworker operator talks to (the rig's compute API simulator).
//
// It wraps Karpenter's own kwok provider (sigs.k8s.io/karpenter/kwok/cloudprovider) for what
// needs no cloud (instance types from INSTANCE_TYPES_FILE_PATH, drift, repair policies, reboot,
// the KWOKNodeClass) and replaces what upstream kwok fakes in the apiserver alone:
//
//   - Create inserts an instance (instances.insert, waiting for its zone operation, so launch
//     takes the simulator's latency and its errors), names it RFC 1035 and <= 63 characters,
//     and gives the NodeClaim providerID gce://PROJECT/ZONE/NAME. The Node, named like the
//     instance as on GKE, is created as a kubelet would register it: only once the instance is
//     RUNNING and the KWOKNodeClass's nodeRegistrationDelay (the boot time) has passed, with
//     the zone/region/instance-type/GKE-accelerator labels and the NodeClaim's taints and
//     startup taints (kubelet --register-with-taints), plus Karpenter's unregistered taint.
//   - Delete deletes the instance (instances.delete), so its autoDelete disks go with it, and
//     reports the NodeClaim gone only when the instance is.
//   - Get and List read instances back (List only those this cluster's Karpenter made), which
//     is what Karpenter's garbage collection and termination compare NodeClaims against.
package main

import (
	"context"
	stderrors "errors"
	"fmt"
	"maps"
	"time"

	"github.com/awslabs/operatorpkg/status"
	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"sigs.k8s.io/karpenter/kwok/apis/v1alpha1"
	kwok "sigs.k8s.io/karpenter/kwok/cloudprovider"
	v1 "sigs.k8s.io/karpenter/pkg/apis/v1"
	"sigs.k8s.io/karpenter/pkg/cloudprovider"
	"sigs.k8s.io/karpenter/pkg/scheduling"
)

const (
	LabelGKEAccelerator = "cloud.google.com/gke-accelerator"
	GPUResource         = corev1.ResourceName("nvidia.com/gpu")

	// GCE labels on the instances this provider makes (GCE label keys allow no '/' or '.').
	InstanceLabelCluster   = "karpenter-sh-cluster"
	InstanceLabelNodePool  = "karpenter-sh-nodepool"
	InstanceLabelNodeClaim = "karpenter-sh-nodeclaim"

	kwokAnnotation = "kwok.x-k8s.io/node" // the rig's kwok manages Nodes with this annotation = "fake"
	deleteWait     = 60 * time.Second     // then Delete returns and Karpenter calls again in 5 s
)

// Operation error codes that mean "no capacity here now": Karpenter then gives up the NodeClaim
// and tries again, instead of retrying the same launch.
var capacityCodes = map[string]bool{
	"ZONE_RESOURCE_POOL_EXHAUSTED":              true,
	"ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS": true,
	"QUOTA_EXCEEDED":                            true,
}

type Provider struct {
	*kwok.CloudProvider
	kube          client.Client
	compute       *Compute
	project       string
	cluster       string
	instanceTypes []*cloudprovider.InstanceType
}

func NewProvider(base *kwok.CloudProvider, kube client.Client, compute *Compute, opts *Options, its []*cloudprovider.InstanceType) *Provider {
	return &Provider{CloudProvider: base, kube: kube, compute: compute, project: opts.Project, cluster: opts.ClusterName, instanceTypes: its}
}

func (p *Provider) Name() string { return "gce-kwok" }

func (p *Provider) Create(ctx context.Context, nodeClaim *v1.NodeClaim) (*v1.NodeClaim, error) {
	nodeClass := &v1alpha1.KWOKNodeClass{}
	if err := p.kube.Get(ctx, types.NamespacedName{Name: nodeClaim.Spec.NodeClassRef.Name}, nodeClass); err != nil {
		if errors.IsNotFound(err) {
			return nil, cloudprovider.NewInsufficientCapacityError(fmt.Errorf("resolving node class, %w", err))
		}
		return nil, fmt.Errorf("resolving node class, %w", err)
	}
	if cond := nodeClass.StatusConditions().Get(status.ConditionReady); cond.IsFalse() {
		return nil, cloudprovider.NewNodeClassNotReadyError(stderrors.New(cond.Message))
	}
	it, offering, err := p.choose(nodeClaim)
	if err != nil {
		return nil, cloudprovider.NewInsufficientCapacityError(err)
	}
	zone := single(offering.Requirements, corev1.LabelTopologyZone)
	if zone == "" {
		return nil, fmt.Errorf("instance type %s offering has no single %s", it.Name, corev1.LabelTopologyZone)
	}
	name := InstanceName(nodeClaim.Name)
	inst := p.instanceFor(nodeClaim, it, offering, name, zone)

	op, err := p.compute.InsertInstance(ctx, zone, inst, RequestID("insert/"+string(nodeClaim.UID)))
	switch {
	case IsAlreadyExists(err):
		// An earlier attempt of this launch got through; adopt the instance if it is ours.
		existing, getErr := p.compute.GetInstance(ctx, zone, name)
		if getErr != nil {
			return nil, fmt.Errorf("reading existing instance %s, %w", name, getErr)
		}
		if existing.Labels[InstanceLabelNodeClaim] != LabelValue(nodeClaim.Name) {
			return nil, fmt.Errorf("instance %s exists and belongs to NodeClaim %q", name, existing.Labels[InstanceLabelNodeClaim])
		}
	case err != nil:
		var api *APIError
		if stderrors.As(err, &api) && api.Reason == "quotaExceeded" {
			return nil, cloudprovider.NewInsufficientCapacityError(err)
		}
		return nil, fmt.Errorf("inserting instance %s in %s, %w", name, zone, err)
	default:
		if err := p.compute.Wait(ctx, zone, op); err != nil {
			var opErr *OperationError
			if stderrors.As(err, &opErr) && capacityCodes[opErr.Code] {
				return nil, cloudprovider.NewInsufficientCapacityError(err)
			}
			return nil, fmt.Errorf("instance %s in %s, %w", name, zone, err)
		}
	}

	node := p.nodeFor(nodeClaim, it, offering, name, zone)
	delay := nodeClass.Spec.NodeRegistrationDelay.Duration
	log.FromContext(ctx).Info("launched gce instance", "instance", name, "zone", zone, "machine-type", it.Name, "boot", delay.String())
	go p.register(ctx, node, zone, delay)
	return p.claimFor(node, it), nil
}

// choose the cheapest available offering compatible with the NodeClaim and, among equally cheap
// ones (the same shape in several zones), one at random, as upstream kwok does.
func (p *Provider) choose(nodeClaim *v1.NodeClaim) (*cloudprovider.InstanceType, *cloudprovider.Offering, error) {
	requirements := scheduling.NewNodeSelectorRequirementsWithMinValues(nodeClaim.Spec.Requirements...)
	req, found := lo.Find(nodeClaim.Spec.Requirements, func(r v1.NodeSelectorRequirementWithMinValues) bool {
		return r.Key == corev1.LabelInstanceTypeStable
	})
	if !found {
		return nil, nil, fmt.Errorf("NodeClaim %s has no %s requirement", nodeClaim.Name, corev1.LabelInstanceTypeStable)
	}
	type choice struct {
		it *cloudprovider.InstanceType
		of *cloudprovider.Offering
	}
	var cheapest []choice
	for _, name := range req.Values {
		it := p.instanceType(name)
		if it == nil {
			continue
		}
		for _, of := range it.Offerings.Available().Compatible(requirements) {
			switch {
			case len(cheapest) == 0 || of.Price < cheapest[0].of.Price:
				cheapest = []choice{{it, of}}
			case of.Price == cheapest[0].of.Price:
				cheapest = append(cheapest, choice{it, of})
			}
		}
	}
	if len(cheapest) == 0 {
		return nil, nil, fmt.Errorf("no available offering of %v fits NodeClaim %s", req.Values, nodeClaim.Name)
	}
	pick := lo.Sample(cheapest)
	return pick.it, pick.of, nil
}

func (p *Provider) instanceType(name string) *cloudprovider.InstanceType {
	it, _ := lo.Find(p.instanceTypes, func(it *cloudprovider.InstanceType) bool { return it.Name == name })
	return it
}

// single is the one value a requirement allows, or "" when it allows none or several.
func single(reqs scheduling.Requirements, key string) string {
	if r := reqs.Get(key); r.Operator() == corev1.NodeSelectorOpIn && r.Len() == 1 {
		return r.Values()[0]
	}
	return ""
}

func singleValues(reqs scheduling.Requirements, into map[string]string) {
	for _, r := range reqs {
		if r.Len() == 1 && r.Operator() == corev1.NodeSelectorOpIn {
			into[r.Key] = r.Values()[0]
		}
	}
}

// The labels a GKE kubelet and Karpenter's launch would put on the Node.
func nodeLabels(nodeClaim *v1.NodeClaim, it *cloudprovider.InstanceType, offering *cloudprovider.Offering, name, zone string) map[string]string {
	labels := maps.Clone(nodeClaim.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	for _, r := range nodeClaim.Spec.Requirements {
		if len(r.Values) == 1 && r.Operator == corev1.NodeSelectorOpIn {
			labels[r.Key] = r.Values[0]
		}
	}
	singleValues(it.Requirements, labels)
	singleValues(offering.Requirements, labels)
	labels[corev1.LabelInstanceTypeStable] = it.Name
	labels[corev1.LabelTopologyZone] = zone
	labels[corev1.LabelTopologyRegion] = Region(zone)
	labels[corev1.LabelHostname] = name
	return labels
}

func (p *Provider) instanceFor(nodeClaim *v1.NodeClaim, it *cloudprovider.InstanceType, offering *cloudprovider.Offering, name, zone string) *Instance {
	inst := &Instance{
		Name:        name,
		MachineType: fmt.Sprintf("zones/%s/machineTypes/%s", zone, it.Name),
		Labels: map[string]string{
			InstanceLabelCluster:   LabelValue(p.cluster),
			InstanceLabelNodePool:  LabelValue(nodeClaim.Labels[v1.NodePoolLabelKey]),
			InstanceLabelNodeClaim: LabelValue(nodeClaim.Name),
		},
		NetworkInterfaces: []map[string]any{{"network": "global/networks/default"}},
		Scheduling:        &Scheduling{ProvisioningModel: "STANDARD"},
	}
	if offering.CapacityType() == v1.CapacityTypeSpot {
		inst.Scheduling.ProvisioningModel = "SPOT"
	}
	gpus := it.Capacity[GPUResource]
	if n := gpus.Value(); n > 0 {
		// GPU VMs cannot live-migrate: GCE requires onHostMaintenance=TERMINATE for them.
		inst.Scheduling.OnHostMaintenance = "TERMINATE"
		if accel := single(offering.Requirements, LabelGKEAccelerator); accel != "" {
			inst.GuestAccelerators = []GuestAccelerator{{
				AcceleratorType:  fmt.Sprintf("zones/%s/acceleratorTypes/%s", zone, accel),
				AcceleratorCount: int(n),
			}}
		}
	}
	return inst
}

func (p *Provider) nodeFor(nodeClaim *v1.NodeClaim, it *cloudprovider.InstanceType, offering *cloudprovider.Offering, name, zone string) *corev1.Node {
	taints := []corev1.Taint{v1.UnregisteredNoExecuteTaint}
	taints = append(taints, nodeClaim.Spec.Taints...)
	taints = append(taints, nodeClaim.Spec.StartupTaints...)
	labels := nodeLabels(nodeClaim, it, offering, name, zone)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      labels,
			Annotations: map[string]string{kwokAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{ProviderID: ProviderID(p.project, zone, name), Taints: taints},
		Status: corev1.NodeStatus{
			Capacity:    it.Capacity,
			Allocatable: it.Allocatable(),
			Phase:       corev1.NodePending,
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:            labels[corev1.LabelArchStable],
				OperatingSystem:         labels[corev1.LabelOSStable],
				OSImage:                 "Container-Optimized OS from Google (kwok)",
				KernelVersion:           "kwok",
				KubeletVersion:          "fake",
				ContainerRuntimeVersion: "kwok",
			},
		},
	}
}

func (p *Provider) claimFor(node *corev1.Node, it *cloudprovider.InstanceType) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: node.Name, Labels: node.Labels},
		Status: v1.NodeClaimStatus{
			ProviderID:  node.Spec.ProviderID,
			ImageID:     "projects/cos-cloud/global/images/family/cos-stable",
			Capacity:    it.Capacity,
			Allocatable: it.Allocatable(),
		},
	}
}

// register plays the VM's boot and its kubelet's registration: once the instance is RUNNING and
// the boot time has passed, the Node appears, unless the instance was deleted meanwhile.
func (p *Provider) register(ctx context.Context, node *corev1.Node, zone string, boot time.Duration) {
	logger := log.FromContext(ctx).WithValues("Node", node.Name)
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for {
		inst, err := p.compute.GetInstance(ctx, zone, node.Name)
		switch {
		case IsNotFound(err):
			logger.Info("instance gone before its node registered")
			return
		case err == nil && inst.Status == "RUNNING":
		case err == nil && inst.Status != "PROVISIONING" && inst.Status != "STAGING":
			logger.Info("instance stopping before its node registered", "status", inst.Status)
			return
		default:
			if !sleep(200 * time.Millisecond) {
				return
			}
			continue
		}
		break
	}
	if !sleep(boot) {
		return
	}
	if inst, err := p.compute.GetInstance(ctx, zone, node.Name); IsNotFound(err) || (err == nil && inst.Status != "RUNNING") {
		logger.Info("instance gone during boot; node not registered")
		return
	}
	err := retry.OnError(retry.DefaultBackoff, func(err error) bool { return !errors.IsAlreadyExists(err) }, func() error {
		return p.kube.Create(ctx, node.DeepCopy())
	})
	if err != nil && !errors.IsAlreadyExists(err) {
		logger.Error(err, "failed registering node")
		return
	}
	logger.Info("node registered", "boot", boot.String())
}

func (p *Provider) Delete(ctx context.Context, nodeClaim *v1.NodeClaim) error {
	project, zone, name, err := ParseProviderID(nodeClaim.Status.ProviderID)
	if err != nil {
		return cloudprovider.NewNodeClaimNotFoundError(err)
	}
	if project != p.project {
		return fmt.Errorf("instance %s is in project %s, not %s", name, project, p.project)
	}
	op, err := p.compute.DeleteInstance(ctx, zone, name, RequestID("delete/"+string(nodeClaim.UID)+"/"+name))
	if IsNotFound(err) {
		return cloudprovider.NewNodeClaimNotFoundError(fmt.Errorf("instance %s terminated", name))
	}
	if err != nil {
		return fmt.Errorf("deleting instance %s, %w", name, err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, deleteWait)
	defer cancel()
	if err := p.compute.Wait(waitCtx, zone, op); err != nil {
		if waitCtx.Err() != nil && ctx.Err() == nil {
			return nil // still deleting; Karpenter calls again
		}
		return fmt.Errorf("deleting instance %s, %w", name, err)
	}
	log.FromContext(ctx).Info("deleted gce instance", "instance", name, "zone", zone)
	return cloudprovider.NewNodeClaimNotFoundError(fmt.Errorf("instance %s terminated", name))
}

func (p *Provider) Get(ctx context.Context, providerID string) (*v1.NodeClaim, error) {
	project, zone, name, err := ParseProviderID(providerID)
	if err != nil || project != p.project {
		return nil, cloudprovider.NewNodeClaimNotFoundError(fmt.Errorf("not an instance of project %s: %q", p.project, providerID))
	}
	inst, err := p.compute.GetInstance(ctx, zone, name)
	if IsNotFound(err) {
		return nil, cloudprovider.NewNodeClaimNotFoundError(err)
	}
	if err != nil {
		return nil, fmt.Errorf("getting instance %s, %w", name, err)
	}
	return p.claimFromInstance(inst), nil
}

func (p *Provider) List(ctx context.Context) ([]*v1.NodeClaim, error) {
	instances, err := p.compute.ListInstances(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing instances, %w", err)
	}
	var claims []*v1.NodeClaim
	for i := range instances {
		if instances[i].Labels[InstanceLabelCluster] == LabelValue(p.cluster) {
			claims = append(claims, p.claimFromInstance(&instances[i]))
		}
	}
	return claims, nil
}

func (p *Provider) claimFromInstance(inst *Instance) *v1.NodeClaim {
	zone := lastSegment(inst.Zone)
	machineType := lastSegment(inst.MachineType)
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: inst.Name,
			Labels: map[string]string{
				corev1.LabelInstanceTypeStable: machineType,
				corev1.LabelTopologyZone:       zone,
				corev1.LabelTopologyRegion:     Region(zone),
			},
		},
		Status: v1.NodeClaimStatus{NodeName: inst.Name, ProviderID: ProviderID(p.project, zone, inst.Name)},
	}
	if it := p.instanceType(machineType); it != nil {
		claim.Status.Capacity = it.Capacity
		claim.Status.Allocatable = it.Allocatable()
	}
	if inst.Status == "STOPPING" || inst.Status == "TERMINATED" {
		// Being deleted: as other providers report shutting-down instances.
		claim.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	}
	return claim
}
