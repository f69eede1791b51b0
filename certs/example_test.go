package certs_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/fedguard/fedguard/certs"
)

// ExampleInit walks through enrolment: the operator creates the CA, the
// hospital makes its key and CSR, the operator signs it, and the
// certificate names the hospital.
func ExampleInit() {
	tmp, err := os.MkdirTemp("", "fedguard-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	// Operator: create the federation CA.
	ca, err := certs.Init(filepath.Join(tmp, "ca"), "hospitals-eu", certs.DefaultCAValidity)
	if err != nil {
		log.Fatal(err)
	}

	// Hospital: make a key (kept at the hospital) and a CSR.
	keyPEM, csrPEM, err := certs.NewParticipantRequest("hospitals-eu", "st-mary")
	if err != nil {
		log.Fatal(err)
	}
	if err := certs.WritePrivateKey(filepath.Join(tmp, "st-mary.key"), keyPEM); err != nil {
		log.Fatal(err)
	}

	// Operator: sign the CSR.
	certPEM, err := ca.Sign(csrPEM, certs.DefaultCertValidity)
	if err != nil {
		log.Fatal(err)
	}
	certFile := filepath.Join(tmp, "st-mary.crt")
	if err := certs.WriteFileAtomic(certFile, certPEM, 0o644); err != nil {
		log.Fatal(err)
	}

	cert, err := certs.LoadCertificate(certFile)
	if err != nil {
		log.Fatal(err)
	}
	id, err := certs.ParseIdentity(cert)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ca.Federation())
	fmt.Println(id)
	fmt.Println(id.Role, id.Name)
	fmt.Println(cert.CheckSignatureFrom(ca.Certificate()) == nil)
	// Output:
	// hospitals-eu
	// spiffe://hospitals-eu/participant/st-mary
	// participant st-mary
	// true
}
