package coordinator_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/internal/fedtest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// rawMessage is a request's encoding sent as it is, so that a test can
// send what no protobuf library would encode.
type rawMessage []byte

// rawCodec sends rawMessages and decodes replies as protobuf.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(rawMessage)
	if !ok {
		return nil, fmt.Errorf("rawCodec sends rawMessage, not %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

// TestMalformedMessageAudited (issue 12): a request that does not decode
// is a refusal like any other, in the text log and the audit log. gRPC
// decodes a unary request before any interceptor runs and answers a
// decoding error with Internal on its own, so such calls (invalid UTF-8
// in a string field, as a non-Go client can send, or a truncated field)
// used to be neither logged nor audited.
func TestMalformedMessageAudited(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	s, logs := startLogged(t, f.cfg)
	p := f.connect(t, s, abc...)[0]

	// JoinRequest.agent_version (field 1) holding the bytes ff fe.
	var joined fedguardv1.JoinResponse
	err := p.conn.Invoke(callCtx(t, 5*time.Second), fedguardv1.CoordinatorService_Join_FullMethodName,
		rawMessage{0x0a, 0x02, 0xff, 0xfe}, &joined, grpc.ForceCodecV2(rawCodec{}))
	wantCode(t, "Join with invalid UTF-8", err, codes.Internal)

	// An update stream whose first message ends inside a field's tag.
	st, err := p.conn.NewStream(callCtx(t, 5*time.Second), &fedguardv1.CoordinatorService_ServiceDesc.Streams[1],
		fedguardv1.CoordinatorService_SubmitUpdate_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(rawMessage{0x08}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var sent fedguardv1.SubmitUpdateResponse
	if err := st.RecvMsg(&sent); err == nil {
		t.Fatal("a truncated update message was accepted")
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}

	want := map[string]bool{
		fedguardv1.CoordinatorService_Join_FullMethodName:         true,
		fedguardv1.CoordinatorService_SubmitUpdate_FullMethodName: true,
	}
	for _, e := range fedtest.AuditEvents(t, f.cfg, audit.KindCallRefused) {
		c := fedtest.Payload[audit.CallRefused](t, e)
		if e.Actor == p.name && strings.Contains(c.Reason, "malformed message") {
			if !want[c.Method] {
				t.Errorf("call_refused for %s audited twice or unexpectedly: %+v", c.Method, c)
			}
			delete(want, c.Method)
		}
	}
	if len(want) != 0 {
		t.Errorf("no call_refused event of %s for the malformed messages to %v", p.name, want)
	}
	n := 0
	for _, rec := range lines(t, logs, "call refused") {
		if rec["participant"] == p.name && strings.Contains(fmt.Sprint(rec["error"]), "malformed message") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d text-log refusals of malformed messages, want 2:\n%s", n, logs)
	}
}

// TestUnknownMethodAudited (trial): a call to a method or service the
// coordinator does not serve is a refusal like any other, in the text log
// and the audit log, under the caller's quota. gRPC answered such a call
// with Unimplemented before any interceptor ran, so it was neither logged
// nor audited, although refusalCode counts Unimplemented as a refusal. The
// method name is the caller's text: the record keeps an excerpt of it.
func TestUnknownMethodAudited(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	s, logs := startLogged(t, f.cfg)
	p := f.connect(t, s, abc...)[0]

	long := "/fedguard.v1.CoordinatorService/" + strings.Repeat("x", 4000)
	methods := []string{"/fedguard.v1.CoordinatorService/Nope", "/fedguard.v1.Other/Nope", long}
	for _, m := range methods {
		var out fedguardv1.JoinResponse
		err := p.conn.Invoke(callCtx(t, 5*time.Second), m, &fedguardv1.JoinRequest{}, &out)
		wantCode(t, "call of "+m[:min(len(m), 60)], err, codes.Unimplemented)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}

	var got []string
	for _, e := range fedtest.AuditEvents(t, f.cfg, audit.KindCallRefused) {
		c := fedtest.Payload[audit.CallRefused](t, e)
		if e.Actor == p.name && c.Code == codes.Unimplemented.String() {
			got = append(got, c.Method)
			if len(c.Method) > 256 || len(c.Reason) > 512 {
				t.Errorf("call_refused holds %d bytes of method and %d of reason, want an excerpt", len(c.Method), len(c.Reason))
			}
		}
	}
	if len(got) != len(methods) || got[0] != methods[0] || got[1] != methods[1] || !strings.HasPrefix(long, strings.TrimSuffix(got[2], "…")) {
		t.Errorf("audited Unimplemented calls %q, want %d of them, for %q", got, len(methods), methods[:2])
	}
	n := 0
	for _, rec := range lines(t, logs, "call refused") {
		if rec["participant"] == p.name && rec["code"] == codes.Unimplemented.String() {
			n++
		}
	}
	if n != len(methods) {
		t.Errorf("%d text-log refusals of unknown methods, want %d:\n%s", n, len(methods), logs)
	}
}
