package ca_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/certs/ca"
)

// Example enrols a hospital and revokes it: the CA's audit log then holds
// one event for each, which a compliance officer verifies with
// CA_DIR/audit/signing.pub (`fedguard audit verify`).
func Example() {
	tmp, err := os.MkdirTemp("", "fedguard-ca-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "ca")

	authority, err := ca.Init(dir, "hospitals-eu", 0)
	if err != nil {
		log.Fatal(err)
	}

	// At the hospital: a key that stays there, and a CSR for the operator.
	_, csr, err := certs.NewParticipantRequest("hospitals-eu", "st-mary")
	if err != nil {
		log.Fatal(err)
	}
	// At the CA: sign it; the issuance is in the log before the file is written.
	_, id, err := authority.Sign(csr, 0, filepath.Join(tmp, "st-mary.crt"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed", id)

	revoked, err := authority.RevokeName("st-mary")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("revoked", len(revoked), "certificate of", revoked[0].Identity)

	l, err := audit.Open(filepath.Join(ca.AuditDir(dir), "audit.db"), audit.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	err = l.Events(0, func(e audit.Event) error {
		fmt.Println("audit:", e.Kind, "by", e.Actor)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("origin:", l.Origin())
	// Output:
	// signed spiffe://hospitals-eu/participant/st-mary
	// revoked 1 certificate of spiffe://hospitals-eu/participant/st-mary
	// audit: certificate_issued by ca
	// audit: certificate_revoked by ca
	// origin: fedguard/hospitals-eu/ca
}
