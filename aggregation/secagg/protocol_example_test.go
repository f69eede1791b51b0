package secagg_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log"

	"github.com/fedguard/fedguard/aggregation/secagg"
)

// Example runs one aggregation of three participants, the third of which
// drops out after sharing its keys (the case that costs the server most).
// In fedguard the server's outputs travel to the participants over gRPC;
// here they are handed over directly.
func Example() {
	cfg := secagg.Config{
		Session:   []byte("federation-1|round-7|attempt-1|bucket-0"),
		N:         3,
		Threshold: 2, // more than half of the 3 holders of each secret
		Dim:       3,
	}
	// Identity keys: Ed25519 here; fedguard uses its TLS certificates'
	// ECDSA keys, which work the same way.
	pubs := map[uint32]crypto.PublicKey{}
	clients := map[uint32]*secagg.Client{}
	verify := secagg.PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if pub, ok := pubs[id]; ok {
			return pub, nil
		}
		return nil, fmt.Errorf("unknown participant %d", id)
	})
	for id := uint32(1); id <= 3; id++ {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			log.Fatal(err)
		}
		pubs[id] = pub
		if clients[id], err = secagg.NewClient(cfg, id, priv, verify, rand.Reader); err != nil {
			log.Fatal(err)
		}
	}
	server, err := secagg.NewServer(cfg, verify)
	if err != nil {
		log.Fatal(err)
	}
	inputs := map[uint32][]uint32{1: {1, 2, 3}, 2: {10, 20, 30}, 3: {100, 200, 300}}
	must := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}

	// Round 0: advertise keys.
	var adverts []*secagg.AdvertiseKeys
	for id := uint32(1); id <= 3; id++ {
		m, err := clients[id].AdvertiseKeys()
		must(err)
		adverts = append(adverts, m)
	}
	relay, _, err := server.CollectKeys(adverts)
	must(err)

	// Round 1: share keys.
	var shares []*secagg.ShareKeys
	for id := uint32(1); id <= 3; id++ {
		m, err := clients[id].ShareKeys(relay[id])
		must(err)
		shares = append(shares, m)
	}
	route, _, err := server.CollectShares(shares)
	must(err)

	// Round 2: masked inputs; participant 3 has dropped out.
	var masked []*secagg.MaskedInput
	for id := uint32(1); id <= 2; id++ {
		m, err := clients[id].MaskedInput(route[id], inputs[id])
		must(err)
		masked = append(masked, m)
	}
	survivors, _, err := server.CollectMasked(masked)
	must(err)
	fmt.Println("survivors:", survivors)

	// Round 3: consistency check.
	var sigs []*secagg.ConsistencySig
	for _, id := range survivors {
		m, err := clients[id].ConsistencyCheck(survivors)
		must(err)
		sigs = append(sigs, m)
	}
	requests, _, err := server.CollectConsistency(sigs)
	must(err)
	fmt.Println("participant 1 is asked for the mask key shares of", requests[1].Dropped)

	// Round 4: unmasking.
	var resps []*secagg.UnmaskResponse
	for _, id := range survivors {
		m, err := clients[id].Unmask(requests[id])
		must(err)
		resps = append(resps, m)
	}
	sum, _, err := server.Unmask(resps)
	must(err)
	fmt.Println("sum:", sum)
	// Output:
	// survivors: [1 2]
	// participant 1 is asked for the mask key shares of [3]
	// sum: [11 22 33]
}
