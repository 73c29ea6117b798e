// The small part of the Compute Engine v1 REST API this provider needs (instances insert/get/
// delete/aggregatedList, zone operations wait), spoken as JSON over HTTP to the endpoint it is
// given: the rig's compute API simulator (it sends no credentials; the simulator takes none).
//
// No Google client library: the shapes used are few, and the Go module graph of Karpenter stays
// the one upstream tests. Retries follow the API's guidance for 429/5xx with backoff; mutations
// carry a requestId so that a retried insert or delete acts once.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Instance is the subset of compute#instance the provider reads and writes.
type Instance struct {
	Name              string             `json:"name"`
	MachineType       string             `json:"machineType,omitempty"`
	Status            string             `json:"status,omitempty"`
	Zone              string             `json:"zone,omitempty"`
	Labels            map[string]string  `json:"labels,omitempty"`
	CreationTimestamp string             `json:"creationTimestamp,omitempty"`
	GuestAccelerators []GuestAccelerator `json:"guestAccelerators,omitempty"`
	Scheduling        *Scheduling        `json:"scheduling,omitempty"`
	NetworkInterfaces []map[string]any   `json:"networkInterfaces,omitempty"`
}

type GuestAccelerator struct {
	AcceleratorType  string `json:"acceleratorType"`
	AcceleratorCount int    `json:"acceleratorCount"`
}

type Scheduling struct {
	OnHostMaintenance string `json:"onHostMaintenance,omitempty"`
	AutomaticRestart  *bool  `json:"automaticRestart,omitempty"`
	ProvisioningModel string `json:"provisioningModel,omitempty"`
}

// Operation is the subset of compute#operation the provider reads.
type Operation struct {
	Name   string `json:"name"`
	Zone   string `json:"zone,omitempty"`
	Status string `json:"status"`
	Error  *struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	} `json:"error,omitempty"`
}

// OperationError is a DONE operation that failed; Code is GCE's (e.g. ZONE_RESOURCE_POOL_EXHAUSTED).
type OperationError struct {
	Code, Message string
}

func (e *OperationError) Error() string { return e.Code + ": " + e.Message }

// APIError is a non-2xx answer.
type APIError struct {
	Status  int
	Reason  string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("compute API %d %s: %s", e.Status, e.Reason, e.Message)
}

func IsNotFound(err error) bool {
	var api *APIError
	return errors.As(err, &api) && api.Status == http.StatusNotFound
}

func IsAlreadyExists(err error) bool {
	var api *APIError
	return errors.As(err, &api) && api.Status == http.StatusConflict
}

type Compute struct {
	base    string // ends in /compute/v1/
	project string
	http    *http.Client
}

func NewCompute(base, project string) *Compute {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return &Compute{base: base, project: project, http: &http.Client{Timeout: 150 * time.Second}}
}

func (c *Compute) zoneURL(zone string) string {
	return fmt.Sprintf("%sprojects/%s/zones/%s", c.base, url.PathEscape(c.project), url.PathEscape(zone))
}

// RequestID is a UUID derived from a key, so a retried mutation (same key) is recognised by the API.
func RequestID(key string) string {
	h := sha1.Sum([]byte(key))
	h[6] = (h[6] & 0x0f) | 0x50 // version 5
	h[8] = (h[8] & 0x3f) | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func (c *Compute) InsertInstance(ctx context.Context, zone string, inst *Instance, requestID string) (*Operation, error) {
	op := &Operation{}
	u := c.zoneURL(zone) + "/instances?requestId=" + url.QueryEscape(requestID)
	return op, c.do(ctx, http.MethodPost, u, inst, op)
}

func (c *Compute) GetInstance(ctx context.Context, zone, name string) (*Instance, error) {
	inst := &Instance{}
	return inst, c.do(ctx, http.MethodGet, c.zoneURL(zone)+"/instances/"+url.PathEscape(name), nil, inst)
}

func (c *Compute) DeleteInstance(ctx context.Context, zone, name, requestID string) (*Operation, error) {
	op := &Operation{}
	u := c.zoneURL(zone) + "/instances/" + url.PathEscape(name) + "?requestId=" + url.QueryEscape(requestID)
	return op, c.do(ctx, http.MethodDelete, u, nil, op)
}

// ListInstances lists every instance of the project (instances.aggregatedList, all pages).
func (c *Compute) ListInstances(ctx context.Context) ([]Instance, error) {
	var out []Instance
	token := ""
	for {
		u := fmt.Sprintf("%sprojects/%s/aggregated/instances", c.base, url.PathEscape(c.project))
		if token != "" {
			u += "?pageToken=" + url.QueryEscape(token)
		}
		var page struct {
			Items map[string]struct {
				Instances []Instance `json:"instances"`
			} `json:"items"`
			NextPageToken string `json:"nextPageToken"`
		}
		if err := c.do(ctx, http.MethodGet, u, nil, &page); err != nil {
			return nil, err
		}
		for _, scoped := range page.Items {
			out = append(out, scoped.Instances...)
		}
		if page.NextPageToken == "" {
			return out, nil
		}
		token = page.NextPageToken
	}
}

// Wait blocks until the zone operation is DONE (zoneOperations.wait returns early at its own
// deadline, hence the loop) or ctx ends; a DONE operation with an error is an *OperationError.
func (c *Compute) Wait(ctx context.Context, zone string, op *Operation) error {
	for op.Status != "DONE" {
		next := &Operation{}
		if err := c.do(ctx, http.MethodPost, c.zoneURL(zone)+"/operations/"+url.PathEscape(op.Name)+"/wait", nil, next); err != nil {
			return err
		}
		op = next
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		e := op.Error.Errors[0]
		return &OperationError{Code: e.Code, Message: e.Message}
	}
	return nil
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

func (c *Compute) do(ctx context.Context, method, u string, in, out any) error {
	var payload []byte
	if in != nil {
		var err error
		if payload, err = json.Marshal(in); err != nil {
			return err
		}
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := c.once(ctx, method, u, payload, out)
		var api *APIError
		if err == nil || !errors.As(err, &api) || !retryable(api.Status) || attempt == 6 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func (c *Compute) once(ctx context.Context, method, u string, payload []byte, out any) error {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Message string `json:"message"`
				Errors  []struct {
					Reason string `json:"reason"`
				} `json:"errors"`
			} `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		reason := ""
		if len(e.Error.Errors) > 0 {
			reason = e.Error.Errors[0].Reason
		}
		return &APIError{Status: resp.StatusCode, Reason: reason, Message: e.Error.Message}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}
