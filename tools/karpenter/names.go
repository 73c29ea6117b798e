// Names and IDs as GCE and GKE shape them: RFC 1035 instance names (which are also the Node
// names, as on GKE), gce://PROJECT/ZONE/NAME provider IDs, and label values GCE accepts.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

const (
	maxNameLen   = 63
	providerIDGC = "gce://"
)

var (
	notNameChar  = regexp.MustCompile(`[^a-z0-9-]+`)
	notLabelChar = regexp.MustCompile(`[^a-z0-9_-]+`)
	rfc1035      = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

// InstanceName maps a NodeClaim name (a DNS-1123 subdomain, up to 253 characters, dots allowed)
// to a GCE instance name: RFC 1035, at most 63 characters, deterministic, so that a retried
// Create names the same instance. A name that must be shortened or changed keeps a readable
// prefix and gets a hash of the original, so two NodeClaims never share an instance.
func InstanceName(nodeClaim string) string {
	name := strings.Trim(notNameChar.ReplaceAllString(strings.ToLower(nodeClaim), "-"), "-")
	if name == "" || name[0] < 'a' || name[0] > 'z' {
		name = "n-" + name
	}
	if name == nodeClaim && len(name) <= maxNameLen && rfc1035.MatchString(name) {
		return name
	}
	sum := sha256.Sum256([]byte(nodeClaim))
	suffix := hex.EncodeToString(sum[:])[:8]
	keep := maxNameLen - len(suffix) - 1
	if len(name) > keep {
		name = name[:keep]
	}
	return strings.TrimRight(name, "-") + "-" + suffix
}

// LabelValue makes s a valid GCE label value (lowercase letters, digits, '_' and '-', <= 63).
func LabelValue(s string) string {
	v := notLabelChar.ReplaceAllString(strings.ToLower(s), "-")
	if len(v) > maxNameLen {
		v = v[:maxNameLen]
	}
	return v
}

func ProviderID(project, zone, name string) string {
	return fmt.Sprintf("%s%s/%s/%s", providerIDGC, project, zone, name)
}

// ParseProviderID splits gce://PROJECT/ZONE/NAME.
func ParseProviderID(id string) (project, zone, name string, err error) {
	rest, ok := strings.CutPrefix(id, providerIDGC)
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("provider ID %q is not gce://PROJECT/ZONE/NAME", id)
	}
	return parts[0], parts[1], parts[2], nil
}

// Region of a zone: us-central1-a -> us-central1.
func Region(zone string) string {
	if i := strings.LastIndex(zone, "-"); i > 0 {
		return zone[:i]
	}
	return zone
}

// lastSegment of a self link or partial URL (".../machineTypes/g2-standard-8" -> "g2-standard-8").
func lastSegment(link string) string {
	return link[strings.LastIndex(link, "/")+1:]
}
