package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/internal/process"
)

// containerUID is the unprivileged user of the image (Containerfile, USER).
const containerUID = 65532

// Paths inside the container: the configuration and certificates, mounted
// read-only, and the data volume (the image's VOLUME).
const (
	containerEtc  = "/etc/fedguard"
	containerData = "/var/lib/fedguard"
)

// TestContainerFederation runs the coordinator from the container image the
// way docs/deploy.md tells an operator to (read-only root file system, the
// image's unprivileged user, no capabilities, the data directory on a
// volume), two hospitals on the host with the real binary, three rounds;
// then the audit log the container wrote is exported and verified on the
// host.
//
// It uses the image named by FEDGUARD_IMAGE (`make image-test`, .ci/run)
// or builds one from the Containerfile. It needs rootful podman: without
// it the test is skipped, except in CI (CI=true), where it fails.
func TestContainerFederation(t *testing.T) {
	fedtest.SkipIfShort(t, "starts containers")
	podman := requirePodman(t)
	image := containerImage(t, podman)

	// The image is what the Containerfile promises.
	var cfg struct {
		User       string
		Volumes    map[string]any
		Entrypoint []string
	}
	out, err := exec.Command(podman, "image", "inspect", "--format", "{{json .Config}}", image).Output()
	if err != nil {
		t.Fatalf("podman image inspect %s: %v", image, err)
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("podman image inspect %s: %v\n%s", image, err, out)
	}
	if cfg.User != fmt.Sprintf("%d:%d", containerUID, containerUID) {
		t.Errorf("image user = %q, want %d:%d", cfg.User, containerUID, containerUID)
	}
	if _, ok := cfg.Volumes[containerData]; !ok || len(cfg.Volumes) != 1 {
		t.Errorf("image volumes = %v, want exactly %s", cfg.Volumes, containerData)
	}
	if len(cfg.Entrypoint) != 1 || cfg.Entrypoint[0] != "/usr/local/bin/fedguard" {
		t.Errorf("image entrypoint = %q, want /usr/local/bin/fedguard", cfg.Entrypoint)
	}

	// The operator's and the hospitals' files, made with the host binary
	// as in TestCLIEnrolmentFlow.
	root := t.TempDir()
	const fed = "container-net"
	ca := filepath.Join(root, "operator", "ca")
	etc := filepath.Join(root, "etc")   // mounted read-only at /etc/fedguard
	data := filepath.Join(root, "data") // the data volume
	if err := os.Mkdir(etc, 0o700); err != nil {
		t.Fatal(err)
	}
	mustFedguard(t, "ca", "init", "--dir", ca, "--federation", fed)
	mustFedguard(t, "ca", "issue", "--dir", ca, "--host", "127.0.0.1,localhost",
		"--out-cert", filepath.Join(etc, "coordinator.crt"), "--out-key", filepath.Join(etc, "coordinator.key"))
	for _, f := range []string{"ca.crt", "crl.pem"} {
		fedtest.CopyFile(t, filepath.Join(ca, f), filepath.Join(etc, f))
	}
	hospitals := []string{"st-mary", "city-general"}
	for i, h := range hospitals {
		hdir := filepath.Join(root, h)
		mustFedguard(t, "participant", "init", "--name", h, "--federation", fed, "--dir", hdir)
		mustFedguard(t, "ca", "sign", "--dir", ca, "--csr", filepath.Join(hdir, h+".csr"), "--out", filepath.Join(hdir, h+".crt"))
		writeWDBCShare(t, filepath.Join(hdir, "data.csv"), i, len(hospitals))
	}
	c := fedConfig(t, root, fed, hospitals, 2, 3)
	c.DataDir = containerData
	c.CACert = containerEtc + "/ca.crt"
	c.Cert = containerEtc + "/coordinator.crt"
	c.Key = containerEtc + "/coordinator.key"
	c.CRL = containerEtc + "/crl.pem"
	c.RoundTimeout = 0 // the default: nobody drops out here
	cfgPath := containerEtc + "/" + filepath.Base(writeConfig(t, etc, c))
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	// The service user owns its files, as on a real host.
	chownTree(t, etc, containerUID)
	chownTree(t, data, containerUID)

	name := fmt.Sprintf("fedguard-test-%d", time.Now().UnixNano())
	run := []string{"run", "--rm",
		"--read-only", "--read-only-tmpfs=false", // no tmpfs either: any write outside the volume fails
		"--user", fmt.Sprintf("%d:%d", containerUID, containerUID),
		"--cap-drop", "all", "--security-opt", "no-new-privileges",
		"--network", "host", // the coordinator listens on 127.0.0.1 and logs its port
		"-v", etc + ":" + containerEtc + ":ro",
		"-v", data + ":" + containerData,
	}

	// The operator makes the signing keys in the volume before enrolment.
	args := append(append([]string{}, run...), image, "coordinator", "--config", cfgPath, "--init-keys")
	if out, err := exec.Command(podman, args...).CombinedOutput(); err != nil || !strings.Contains(string(out), containerData+"/signing.pub") {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	pub := filepath.Join(data, "signing.pub")
	// Then the federation: `coordinator init` creates it in the volume and
	// exits, so the service below only ever resumes.
	args = append(append([]string{}, run...), image, "coordinator", "init", "--config", cfgPath)
	if out, err := exec.Command(podman, args...).CombinedOutput(); err != nil || !strings.Contains(string(out), containerData+"/state.db") {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	// The coordinator, in the container; process.StartCoordinator runs
	// "BIN --log-format json coordinator --config PATH", so BIN is a
	// script that runs the image with those arguments.
	wrapper := filepath.Join(root, "fedguard-in-container")
	script := "#!/bin/sh\nexec " + shellQuote(append(append([]string{podman}, run...), "--name", name, image)) + ` "$@"` + "\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	logs := &fedtest.LogBuffer{}
	// No --init: the federation exists, the coordinator resumes it.
	coord, err := process.StartCoordinator(context.Background(), wrapper, cfgPath, logs)
	if err != nil {
		t.Fatalf("coordinator in the container: %v\nlog:\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		// Killing podman's client would leave the container running.
		_ = exec.Command(podman, "rm", "--force", "--time", "0", name).Run()
		select {
		case <-coord.Done():
		case <-time.After(30 * time.Second):
			_ = coord.Signal(syscall.SIGKILL)
			<-coord.Done()
		}
		if t.Failed() {
			t.Logf("coordinator (container %s) log:\n%s", name, logs.String())
		}
	})

	var procs []*participantProc
	for _, h := range hospitals {
		hdir := filepath.Join(root, h)
		procs = append(procs, startParticipant(t, h,
			"--coordinator", coord.Addr, "--federation", fed,
			"--ca", filepath.Join(ca, "ca.crt"),
			"--cert", filepath.Join(hdir, h+".crt"), "--key", filepath.Join(hdir, h+".key"),
			"--data", filepath.Join(hdir, "data.csv"), "--ignore", "id",
			"--coordinator-key", pub))
	}
	for _, p := range procs {
		if err := p.wait(t, 2*time.Minute); err != nil {
			t.Errorf("participant %s exited with %v, want 0", p.name, err)
		}
	}
	select {
	case <-coord.Done():
		if err := coord.Wait(); err != nil {
			t.Errorf("the coordinator's container exited with %v after the last round, want 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the coordinator's container still runs a minute after the hospitals finished")
	}
	finished := false
	closed := map[float64]float64{}
	for _, r := range coord.Logs() {
		switch r["msg"] {
		case "training finished":
			finished = true
		case "round closed":
			round, _ := r["round"].(float64)
			closed[round], _ = r["participants"].(float64)
		}
	}
	if !finished || len(closed) != 3 || closed[1] != 2 || closed[2] != 2 || closed[3] != 2 {
		t.Errorf("coordinator logged training finished = %v and rounds closed (round: participants) %v; want 3 rounds of 2", finished, closed)
	}

	// Everything in the volume was written by the image's user.
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != containerUID {
			t.Errorf("%s is owned by uid %d, want %d (the image's user)", path, st.Uid, containerUID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The compliance officer's checks, on the host: export, verify, prove.
	checkAuditTrail(t, data, 3)
}

// requirePodman returns podman's path, or skips the test where rootful
// podman is not available; in CI (CI=true) that is a failure instead,
// because CI must build and run the image.
func requirePodman(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI (CI=true) must run this test: .ci/run installs Debian's podman and runc and runs as root", why)
		}
		t.Skip(why)
	}
	if runtime.GOOS != "linux" {
		missing("the container image is linux only")
	}
	podman, err := exec.LookPath("podman")
	if err != nil {
		missing("podman is not installed (Debian packages podman and runc)")
	}
	if os.Geteuid() != 0 {
		missing("rootful podman needs root")
	}
	// On this kind of machine podman needs the runc runtime and explicit
	// ulimits; see docs/deploy.md.
	conf, err := filepath.Abs(filepath.Join("testdata", "containers.conf"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONTAINERS_CONF", conf)
	return podman
}

// containerImage returns FEDGUARD_IMAGE, or builds the image from the
// Containerfile as `make image` does (a static binary built here, in a
// temporary build context) and removes it when the test ends.
func containerImage(t *testing.T, podman string) string {
	t.Helper()
	if img := os.Getenv("FEDGUARD_IMAGE"); img != "" {
		return img
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.TempDir()
	bin := filepath.Join(ctx, "bin", "fedguard-linux-"+runtime.GOARCH)
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-buildid=", "-o", bin, "./cmd/fedguard")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	for _, f := range []string{"passwd", "group"} {
		fedtest.CopyFile(t, filepath.Join(root, "deploy", "container", f), filepath.Join(ctx, "deploy", "container", f))
	}
	image := fmt.Sprintf("localhost/fedguard-test:%d", time.Now().UnixNano())
	cmd := exec.Command(podman, "build", "--platform", "linux/"+runtime.GOARCH, "-f", filepath.Join(root, "Containerfile"), "-t", image, ctx)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(podman, "rmi", "--force", image).Run() })
	return image
}

// chownTree gives dir and everything in it to uid (and the group of the
// same number).
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// shellQuote quotes args for a POSIX shell.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
