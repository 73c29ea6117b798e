// InstanceName keeps GCE's name rules for every NodeClaim name Karpenter can make.
package main

import (
	"strings"
	"testing"
)

func TestInstanceName(t *testing.T) {
	cases := map[string]string{
		"gpu-x7k2p": "gpu-x7k2p", // already RFC 1035: unchanged, so the Node is named like the NodeClaim
	}
	for in, want := range cases {
		if got := InstanceName(in); got != want {
			t.Errorf("InstanceName(%q) = %q, want %q", in, got, want)
		}
	}
	seen := map[string]string{}
	for _, in := range []string{
		"gpu.pool-x7k2p", "gpu-pool-x7k2p-", "9gpu-x7k2p", "GPU_Pool-x7k2p",
		strings.Repeat("a", 58) + "-x7k2p", strings.Repeat("a.b", 80) + "-x7k2p",
	} {
		got := InstanceName(in)
		if !rfc1035.MatchString(got) || len(got) > maxNameLen {
			t.Errorf("InstanceName(%q) = %q: not RFC 1035 or longer than 63", in, got)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("InstanceName(%q) = InstanceName(%q) = %q", in, other, got)
		}
		seen[got] = in
		if InstanceName(in) != got {
			t.Errorf("InstanceName(%q) is not deterministic", in)
		}
	}
}

func TestProviderIDRoundTrip(t *testing.T) {
	id := ProviderID("p", "us-central1-a", "gpu-x7k2p")
	if id != "gce://p/us-central1-a/gpu-x7k2p" {
		t.Fatalf("ProviderID = %q", id)
	}
	p, z, n, err := ParseProviderID(id)
	if err != nil || p != "p" || z != "us-central1-a" || n != "gpu-x7k2p" {
		t.Fatalf("ParseProviderID(%q) = %q %q %q %v", id, p, z, n, err)
	}
	for _, bad := range []string{"kwok://x", "gce://p/z", "gce://p//n", ""} {
		if _, _, _, err := ParseProviderID(bad); err == nil {
			t.Errorf("ParseProviderID(%q) accepted", bad)
		}
	}
	if Region("us-central1-a") != "us-central1" {
		t.Errorf("Region")
	}
}
