"""Benchmarks for `make bench`: medians of interleaved runs and ratios against peers.

Rows:
  create, run `true`, destroy: offswitch embedded, the CLI through the daemon, the daemon's API
    alone (no CLI process), bwrap, runc run
  exec `true` in a running sandbox: offswitch API (one HTTP request on the Unix socket),
    offswitch CLI client, runc exec, nsenter into a running bubblewrap sandbox
  scripted Palisade trials (the overwrite-echo agent, 9 steps plus Palisade's check after each):
    one trial's time through the API and in embedded mode, and trials per second through the
    daemon at concurrency 1, 4 and 16 (no peer: Palisade's harness is Inspect with Docker)
  memory: offswitchd's resident memory idle and with 1, 10 and 50 idle sandboxes, and each
    sandbox's own memory (its cgroup's usage)
  file-heavy work inside a sandbox (untar and remove 5,000 files; 20,000 `echo >> file`), timed
    inside the sandbox with bash's $EPOCHREALTIME: recording on (the docker profile), recording
    off (the same profile without its record list), and under `strace -f` with recording off
  attacks next door: each resource attempt of the escape battery (scripts/escape-suite) in a
    sandbox of offswitchd's while a neighbour sandbox of the same daemon is exec'd into every 5 ms:
    the neighbour's latency against idle, the daemon's CPU, peak memory and state directory

  images: create, exec `true`, destroy with an image root beside the host root, importing and pulling a
    200 MB image beside GNU tar unpacking the same layer

BENCH_ONLY=images, BENCH_ONLY=attacks or BENCH_ONLY=recording runs that section alone (printed; bench/results is left
as it was).
"""
import http.client, json, os, platform, shutil, socket, statistics, subprocess, sys, tempfile, time

offswitch, runs = sys.argv[1], int(sys.argv[2])
offswitchd = os.path.join(os.path.dirname(offswitch), "offswitchd")
work = tempfile.mkdtemp(prefix="offswitch-bench-")
sock = os.path.join(work, "d.sock")
cleanups = []
only = os.environ.get("BENCH_ONLY", "")
# Every table printed, for bench/results/latest.json and latest.md.
sections = []
repository = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("offswitchd")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api(method, path, body=None):
    connection = UnixHTTP(sock)
    connection.request(method, path, body=json.dumps(body) if body is not None else None)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]}")
    return json.loads(data) if data else None


def quiet(argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(cases, runs):
    """cases: name -> zero-argument callable. Interleaved; returns name -> list of ms."""
    samples = {name: [] for name in cases}
    for _ in range(3):
        for run in cases.values():
            run()
    for _ in range(runs):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


def report(title, samples, baseline_names):
    print(f"\n{title}")
    print(f"  {'case':52} {'median ms':>10} {'p10':>8} {'p90':>8}  " + "  ".join(f"vs {b.split()[0]}" for b in baseline_names))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    rows = []
    for name, values in samples.items():
        # With few runs the deciles would be extrapolated past the data: the extremes instead.
        q = statistics.quantiles(values, n=10) if len(values) >= 10 else [min(values), max(values)]
        ratios = "  ".join(f"{medians[name] / medians[b]:6.2f}x" for b in baseline_names)
        print(f"  {name:52} {medians[name]:10.2f} {q[0]:8.2f} {q[-1]:8.2f}  {ratios}")
        rows.append({"case": name, "median_ms": round(medians[name], 3), "p10_ms": round(q[0], 3), "p90_ms": round(q[-1], 3),
                     "runs": len(values), "ratios": {b: round(medians[name] / medians[b], 3) for b in baseline_names}})
    sections.append({"title": title, "kind": "timings", "baselines": baseline_names, "rows": rows})


def table(title, columns, rows):
    """A free-form table (trials per second, memory): printed, and kept for the result files."""
    print(f"\n{title}")
    print("  " + "  ".join(f"{c:>14}" for c in columns))
    for row in rows:
        print("  " + "  ".join(f"{str(v):>14}" for v in row))
    sections.append({"title": title, "kind": "table", "columns": columns, "rows": [list(r) for r in rows]})


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cgroup_memory_kib(sandbox_id):
    for path in (f"/sys/fs/cgroup/offswitch/{sandbox_id}/memory.current",
                 f"/sys/fs/cgroup/memory/offswitch/{sandbox_id}/memory.usage_in_bytes"):
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read()) // 1024
    return None


def write_results():
    def git(*args):
        try:
            return subprocess.run(["git", "-C", repository, *args], capture_output=True, text=True, check=True).stdout.strip()
        except Exception:
            return None
    machine = {"cpus": os.cpu_count(), "kernel": platform.release(), "commit": git("rev-parse", "HEAD"),
               "dirty": bool(git("status", "--porcelain", "--untracked-files=no")), "runs": runs,
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    directory = os.path.join(repository, "bench", "results")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "latest.json"), "w") as f:
        json.dump({"format": "offswitch.bench/1", "machine": machine, "sections": sections}, f, indent=2)
        f.write("\n")
    lines = ["# make bench: latest results", "",
             f"{machine['cpus']} CPUs, kernel {machine['kernel']}, commit {machine['commit']}{' (with local changes)' if machine['dirty'] else ''}, "
             f"{machine['date']}, RUNS={runs}. Medians of interleaved runs; ratios are this case's median over the peer's.", ""]
    for section in sections:
        lines += [f"## {section['title']}", ""]
        if section["kind"] == "timings":
            header = ["case", "median ms", "p10", "p90"] + [f"vs {b}" for b in section["baselines"]]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for row in section["rows"]:
                cells = [row["case"], f"{row['median_ms']:.2f}", f"{row['p10_ms']:.2f}", f"{row['p90_ms']:.2f}"]
                cells += [f"{row['ratios'][b]:.2f}x" for b in section["baselines"]]
                lines.append("| " + " | ".join(cells) + " |")
        else:
            lines += ["| " + " | ".join(section["columns"]) + " |", "|" + "---|" * len(section["columns"])]
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in section["rows"]]
        lines.append("")
    with open(os.path.join(directory, "latest.md"), "w") as f:
        f.write("\n".join(lines))
    print(f"\nresults: {directory}/latest.json, {directory}/latest.md")


def runc_bundle():
    bundle = os.path.join(work, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    for tool in ["sh", "true", "sleep"]:
        os.symlink("busybox", os.path.join(rootfs, "bin", tool))
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle, config


def images_next_to_host(daemon):
    """Image roots beside the host root, and importing a 200 MB image beside GNU tar."""
    build = os.path.join(work, "images")
    os.makedirs(build)

    def sh(script):
        subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True, cwd=build,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    sh("mkdir -p small/bin small/etc small/root && cp /bin/busybox small/bin/ && ln -s busybox small/bin/sh"
       " && ln -s busybox small/bin/true && tar --numeric-owner -C small -cf small.tar ."
       " && umoci init --layout layout && umoci new --image layout:small && umoci raw add-layer --image layout:small small.tar"
       " && skopeo copy --quiet oci:layout:small docker-archive:small-docker.tar:bench/small:1")
    connection = UnixHTTP(sock)
    with open(os.path.join(build, "small-docker.tar"), "rb") as f:
        connection.request("POST", "/v1/images?tag=bench-small:1", body=f.read(), headers={"Content-Type": "application/x-tar"})
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 201:
        raise RuntimeError(f"image upload: {response.status}")

    def round_trip(body):
        def run():
            sandbox_id = api("POST", "/v1/sandboxes", body)["id"]
            api("POST", f"/v1/sandboxes/{sandbox_id}/exec", {"argv": ["true"], "user": "root"})
            api("DELETE", f"/v1/sandboxes/{sandbox_id}")
        return run

    samples = measure({
        "API: create, exec true, delete (host root)": round_trip({}),
        "API: create, exec true, delete (image root, busybox)": round_trip({"image": "bench-small:1"}),
    }, max(20, runs // 2))
    report("an image root beside the host root (target: within 10% of each other)", samples,
           ["API: create, exec true, delete (host root)"])

    # A 200 MB image: regular files of the host's /usr/share, one layer.
    sh("python3 - <<'PY'\n"
       "import os, tarfile\n"
       "total = 0\n"
       "with tarfile.open('big.tar', 'w') as tar:\n"
       "    for root, dirs, files in sorted(os.walk('/usr/share')):\n"
       "        dirs.sort()\n"
       "        for name in sorted(files):\n"
       "            path = os.path.join(root, name)\n"
       "            if total < 200 << 20 and os.path.isfile(path) and not os.path.islink(path):\n"
       "                tar.add(path, arcname=path.lstrip('/'), recursive=False)\n"
       "                total += os.path.getsize(path)\n"
       "PY\n"
       "umoci new --image layout:big && umoci raw add-layer --image layout:big big.tar")
    size_mb = os.path.getsize(os.path.join(build, "big.tar")) / 1e6
    timings = {f"offswitch image import (OCI layout, gzip layer, {size_mb:.0f} MB)": [],
               "tar -xf of the same layer, uncompressed (the floor)": [], "tar -xzf of the same layer, gzip": []}
    layer_gz = None
    with open(os.path.join(build, "layout", "index.json")) as f:
        index = json.load(f)
    for descriptor in index["manifests"]:
        if descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name") == "big":
            with open(os.path.join(build, "layout", "blobs", "sha256", descriptor["digest"][7:])) as m:
                layer_gz = os.path.join(build, "layout", "blobs", "sha256", json.load(m)["layers"][-1]["digest"][7:])
    for round_ in range(3):
        store = os.path.join(build, f"store-{round_}")
        start = time.perf_counter()
        quiet([offswitch, "image", "import", os.path.join(build, "layout"), "--store", store])
        timings[f"offswitch image import (OCI layout, gzip layer, {size_mb:.0f} MB)"].append((time.perf_counter() - start) * 1000)
        shutil.rmtree(store)
        for name, flags, source in [("tar -xf of the same layer, uncompressed (the floor)", "-xf", "big.tar"),
                                    ("tar -xzf of the same layer, gzip", "-xzf", layer_gz)]:
            target = os.path.join(build, f"untar-{round_}")
            os.makedirs(target)
            start = time.perf_counter()
            quiet(["tar", flags, os.path.join(build, source), "-C", target])
            timings[name].append((time.perf_counter() - start) * 1000)
            shutil.rmtree(target)
    report("importing a 200 MB image (the import of a whole layout: verifying, unpacking, recording)", timings,
           ["tar -xzf of the same layer, gzip"])

    # The same image pulled from a registry on 127.0.0.1 (Debian's docker-registry), beside
    # skopeo copying it to a layout (downloading and verifying only, no unpacking).
    import socket as sockets
    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(os.path.join(build, "registry.yml"), "w") as f:
        f.write(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {build}/registry}}\n"
                f"http: {{addr: \"127.0.0.1:{port}\"}}\n")
    registry = subprocess.Popen(["/usr/bin/docker-registry", "serve", os.path.join(build, "registry.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                sockets.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        quiet(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{build}/layout:big", f"docker://127.0.0.1:{port}/bench/big:1"])
        pulls = {f"offswitch image pull --plain-http (registry on 127.0.0.1, {size_mb:.0f} MB)": [],
                 "skopeo copy docker:// to an OCI layout, then tar -xzf of its layer": [],
                 "skopeo copy alone (download and verify, no unpacking)": []}
        for round_ in range(3):
            store = os.path.join(build, f"pull-store-{round_}")
            start = time.perf_counter()
            quiet([offswitch, "image", "pull", "--plain-http", "--store", store, f"127.0.0.1:{port}/bench/big:1"])
            pulls[f"offswitch image pull --plain-http (registry on 127.0.0.1, {size_mb:.0f} MB)"].append((time.perf_counter() - start) * 1000)
            shutil.rmtree(store)
            target = os.path.join(build, f"skopeo-{round_}")
            unpacked = os.path.join(build, f"skopeo-rootfs-{round_}")
            os.makedirs(unpacked)
            start = time.perf_counter()
            quiet(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://127.0.0.1:{port}/bench/big:1", f"oci:{target}:big"])
            downloaded = (time.perf_counter() - start) * 1000
            with open(os.path.join(target, "index.json")) as f:
                manifest_digest = json.load(f)["manifests"][0]["digest"][7:]
            with open(os.path.join(target, "blobs", "sha256", manifest_digest)) as f:
                layer = json.load(f)["layers"][-1]["digest"][7:]
            quiet(["tar", "-xzf", os.path.join(target, "blobs", "sha256", layer), "-C", unpacked])
            pulls["skopeo copy docker:// to an OCI layout, then tar -xzf of its layer"].append((time.perf_counter() - start) * 1000)
            pulls["skopeo copy alone (download and verify, no unpacking)"].append(downloaded)
            shutil.rmtree(target)
            shutil.rmtree(unpacked)
        report("pulling the 200 MB image from a registry on loopback (download, verify, unpack, record)", pulls,
               ["skopeo copy docker:// to an OCI layout, then tar -xzf of its layer"])
    finally:
        registry.kill()
        registry.wait()


def attacks_next_door(daemon):
    # Attacks next door: each resource attempt of the escape battery run through offswitchd in a
    # sandbox of its own while a neighbour sandbox is exec'd into every 5 ms, and the daemon's CPU,
    # peak resident memory and state directory measured (docs/security.md, "What an attack costs").
    import threading, yaml
    suite = os.path.join(repository, "scripts", "escape-suite")
    state_dir = os.path.join(work, "state")
    attempts = []
    for name in sorted(os.listdir(suite)):
        with open(os.path.join(suite, name)) as f:
            attempt = yaml.safe_load(f)
        if attempt.get("category") == "resources":
            attempts.append(attempt)

    def cpu_ms(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def disk_bytes(path):
        # -x: the sandboxes' tmpfs mounts are not the host's disk.
        out = subprocess.run(["du", "-sxb", path], capture_output=True, text=True).stdout.split()
        return int(out[0]) if out else 0

    neighbour = api("POST", "/v1/sandboxes", {})["id"]
    cleanups.append(lambda: api("DELETE", "/v1/sandboxes/" + neighbour))

    def neighbour_exec():
        start = time.perf_counter()
        api("POST", f"/v1/sandboxes/{neighbour}/exec", {"argv": ["true"]})
        return (time.perf_counter() - start) * 1000

    def sample(stop, latencies):
        while not stop.is_set():
            latencies.append(neighbour_exec())
            stop.wait(0.005)

    def sampled(seconds):
        """The neighbour's latencies and the daemon's CPU per second while only the sampling runs."""
        stop, latencies = threading.Event(), []
        cpu0, t0 = cpu_ms(daemon.pid), time.perf_counter()
        sampler = threading.Thread(target=sample, args=(stop, latencies))
        sampler.start()
        time.sleep(seconds)
        stop.set()
        sampler.join()
        return latencies, (cpu_ms(daemon.pid) - cpu0) / (time.perf_counter() - t0)

    sampled(1)  # warm-up
    attack_rows = []
    for attempt in attempts:
        # Idle right before each attempt, so that drift between attempts does not count; the
        # sampling's own CPU is taken out of the attempt's.
        idle_latencies, sampling_cpu_per_s = sampled(2)
        idle = statistics.median(idle_latencies)
        with open(f"/proc/{daemon.pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
        disk_before = disk_bytes(state_dir)
        stop, latencies = threading.Event(), []
        cpu0, t0 = cpu_ms(daemon.pid), time.perf_counter()
        sampler = threading.Thread(target=sample, args=(stop, latencies))
        sampler.start()
        attacker = api("POST", "/v1/sandboxes", {})["id"]
        try:
            api("POST", f"/v1/sandboxes/{attacker}/exec", {"argv": ["bash", "-c", attempt["script"]],
                "user": attempt.get("user", "agent"), "timeout": attempt.get("timeout", 20), "output_limit": 65536})
        except RuntimeError as error:  # the attack may end its own sandbox
            print(f"  {attempt['name']}: {str(error)[:120]}", file=sys.stderr)
        if attempt["name"] == "api-read-sparse":
            connection = UnixHTTP(sock)
            connection.request("GET", f"/v1/sandboxes/{attacker}/files?path=/home/user/petabyte")
            response = connection.getresponse()
            while response.read(1 << 20):
                pass
            connection.close()
        disk_during = disk_bytes(state_dir) - disk_before
        teardown0 = time.perf_counter()
        api("DELETE", f"/v1/sandboxes/{attacker}")
        teardown = (time.perf_counter() - teardown0) * 1000
        stop.set()
        sampler.join()
        elapsed = time.perf_counter() - t0
        cpu = cpu_ms(daemon.pid) - cpu0 - sampling_cpu_per_s * elapsed
        median = statistics.median(latencies) if latencies else float("nan")
        attack_rows.append((attempt["name"], f"{idle:.2f}", f"{median:.2f}", f"{median / idle:.2f}x",
                            f"{max(latencies):.1f}" if latencies else "-", len(latencies), f"{max(0, cpu) / 1000:.2f}",
                            f"{peak_rss_kib(daemon.pid) / 1024:.0f}", f"{disk_during / 1048576:.1f}", f"{teardown:.0f}"))
    table("attacks next door, through offswitchd (target: the neighbour's median exec within 2x of idle)",
          ["attempt", "idle ms", "median ms", "ratio", "slowest ms", "execs", "daemon CPU s",
           "daemon peak MiB", "state dir MiB", "teardown ms"], attack_rows)



try:
    daemon = subprocess.Popen([offswitchd, "--socket", sock, "--state-dir", os.path.join(work, "state")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cleanups.append(lambda: (daemon.terminate(), daemon.wait()))
    for _ in range(500):
        if os.path.exists(sock):
            try:
                api("GET", "/healthz")
                break
            except OSError:
                pass
        time.sleep(0.01)

    embedded_env = dict(os.environ, OFFSWITCH_SOCKET=os.path.join(work, "none.sock"))
    if not only:
        bundle, config = runc_bundle()
        counter = [0]

        def runc_run():
            counter[0] += 1
            quiet(["runc", "run", "--bundle", bundle, f"offswitch-bench-{os.getpid()}-{counter[0]}"])

        def api_round_trip():
            sandbox_id = api("POST", "/v1/sandboxes", {})["id"]
            api("POST", f"/v1/sandboxes/{sandbox_id}/exec", {"argv": ["true"]})
            api("DELETE", f"/v1/sandboxes/{sandbox_id}")

        create = measure({
            "offswitch sandbox run -- true (embedded)": lambda: subprocess.run(
                [offswitch, "sandbox", "run", "--", "true"], check=True, env=embedded_env),
            "offswitch sandbox run -- true (through offswitchd)": lambda: quiet(
                [offswitch, "sandbox", "run", "--socket", sock, "--", "true"]),
            "API: create, exec true, delete (three requests)": api_round_trip,
            "bwrap --unshare-all --ro-bind / / true": lambda: quiet(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"]),
            "runc run (busybox bundle, true)": runc_run,
        }, max(20, runs // 2))
        report("create, run `true`, destroy (target: within 2x of bwrap, 5x faster than runc)", create,
               ["bwrap --unshare-all --ro-bind / / true", "runc run (busybox bundle, true)"])

        # Long-lived peers for the exec row.
        sandbox = api("POST", "/v1/sandboxes", {})["id"]
        cleanups.append(lambda: api("DELETE", "/v1/sandboxes/" + sandbox))
        config["process"]["args"] = ["sleep", "100000"]
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        runc_id = f"offswitch-bench-exec-{os.getpid()}"
        quiet(["runc", "run", "--detach", "--bundle", bundle, runc_id])
        cleanups.append(lambda: subprocess.run(["runc", "delete", "--force", runc_id], stderr=subprocess.DEVNULL))
        bwrap = subprocess.Popen(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "sleep", "100000"])
        cleanups.append(lambda: (bwrap.kill(), bwrap.wait()))
        time.sleep(0.3)
        children = open(f"/proc/{bwrap.pid}/task/{bwrap.pid}/children").read().split()
        inner = children[0] if children else str(bwrap.pid)
        unrecorded_sandbox = api("POST", "/v1/sandboxes", {"record": False})["id"]
        cleanups.append(lambda: api("DELETE", "/v1/sandboxes/" + unrecorded_sandbox))
        exec_samples = measure({
            "API: POST /exec true (one HTTP request)": lambda: api("POST", f"/v1/sandboxes/{sandbox}/exec", {"argv": ["true"]}),
            "API: POST /exec true, recording off": lambda: api("POST", f"/v1/sandboxes/{unrecorded_sandbox}/exec", {"argv": ["true"]}),
            "offswitch sandbox exec ID -- true (CLI client)": lambda: quiet(
                [offswitch, "sandbox", "exec", "--socket", sock, sandbox, "--", "true"]),
            "runc exec ID true": lambda: quiet(["runc", "exec", runc_id, "true"]),
            "nsenter -t PID -a true (into bwrap)": lambda: quiet(["nsenter", "-t", inner, "-a", "true"]),
        }, runs)
        report("exec `true` in a running sandbox (target: at or below nsenter)", exec_samples,
               ["nsenter -t PID -a true (into bwrap)", "runc exec ID true"])

        # Scripted trials.
        trial_samples = measure({
            "API: POST /v1/trials (overwrite-echo, 9 steps)": lambda: api("POST", "/v1/trials", {"agent": "overwrite-echo"}),
            "offswitch trial run --embedded (same agent)": lambda: quiet(
                [offswitch, "trial", "run", "--embedded", "--agent", "overwrite-echo", "--out",
                 os.path.join(work, f"trial-{time.monotonic_ns()}")]),
        }, max(10, runs // 5))
        report("one scripted Palisade trial, end to end (target: under 150 ms)", trial_samples, [])
        import concurrent.futures
        per_second = []
        for concurrency in (1, 4, 16):
            count = max(16, concurrency * 4)
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                verdicts = list(pool.map(lambda _: api("POST", "/v1/trials", {"agent": "overwrite-echo"})["verdict"]["verdict"], range(count)))
            elapsed = time.perf_counter() - start
            wrong = sum(1 for v in verdicts if v != "resisted")
            per_second.append((concurrency, count, f"{elapsed:.2f}", f"{count / elapsed:.1f}", wrong))
        table("scripted trials per second through offswitchd (target: 20 a second on 2 cores)",
              ["concurrency", "trials", "seconds", "trials/s", "wrong verdicts"], per_second)

        # Memory: the daemon idle and holding idle sandboxes, and what each sandbox itself uses.
        idle = rss_kib(daemon.pid)
        memory_rows = [("0", idle, "-", "-")]
        held = []
        for target in (1, 10, 50):
            while len(held) < target:
                held.append(api("POST", "/v1/sandboxes", {})["id"])
            time.sleep(0.2)
            usages = [u for u in (cgroup_memory_kib(i) for i in held) if u is not None]
            per_sandbox = f"{statistics.median(usages) / 1024:.1f}" if usages else "n/a"
            rss = rss_kib(daemon.pid)
            memory_rows.append((str(target), rss, f"{(rss - idle) / target:.0f}", per_sandbox))
        for sandbox_id in held:
            api("DELETE", f"/v1/sandboxes/{sandbox_id}")
        time.sleep(0.2)
        memory_rows.append(("0 (after deleting them)", rss_kib(daemon.pid), "-", "-"))
        table("memory: offswitchd's resident set with idle sandboxes (KiB), and each sandbox's cgroup usage (MiB, median)",
              ["idle sandboxes", "daemon RSS KiB", "KiB per sandbox", "sandbox MiB"], memory_rows)

    if only in ("", "recording"):
        # Recording cost. The same bundled docker profile, and a copy without its record list.
        profiles = os.environ.get("OFFSWITCH_HOME", os.path.join(os.path.dirname(__file__), "..")) + "/sandbox-profiles"
        with open(os.path.join(profiles, "docker.yaml")) as f:
            lines = f.read().split("\n")
        kept, skipping = [], False
        for line in lines:
            if line.startswith("record:"):
                skipping = True
                continue
            if skipping and (line.startswith("  ") or line.startswith("#") or not line):
                continue
            skipping = False
            kept.append(line.replace("seccomp: seccomp/", "seccomp: " + profiles + "/seccomp/").replace("name: docker", "name: docker-unrecorded"))
        unrecorded = os.path.join(work, "docker-unrecorded.yaml")
        with open(unrecorded, "w") as f:
            f.write("\n".join(kept))
        workloads = {
            "untar and remove 5,000 files": (
                "mkdir /tmp/src && for ((i = 0; i < 5000; i++)); do echo $i > /tmp/src/f$i; done"
                " && tar -C /tmp -cf /tmp/src.tar src && rm -rf /tmp/src",
                "tar -C /home/user -xf /tmp/src.tar && rm -rf /home/user/src"),
            "20,000 echo >> file (bash loop)": ("true", "for ((i = 0; i < 20000; i++)); do echo x >> /home/user/log; done"),
        }

        def inside(profile, prepare, work_script, wrapper="", env=None):
            script = f"{prepare}; t0=$EPOCHREALTIME; {wrapper}bash -c '{work_script}'; t1=$EPOCHREALTIME; echo $t0 $t1"
            out = subprocess.run([offswitch, "sandbox", "run", "--embedded", "--profile", profile, "--memory", "1024",
                                  "--timeout", "600", "--", "bash", "-c", script],
                                 check=True, capture_output=True, text=True, env=env or embedded_env).stdout.split()
            return (float(out[-1]) - float(out[-2])) * 1000

        # The same recording with the kernel recorder off: every recorded call by user notification.
        notify_env = dict(embedded_env, OFFSWITCH_RECORDER="notify")
        file_runs = max(3, runs // 20)
        for title, (prepare, work_script) in workloads.items():
            timings = {"recording on (docker profile)": [], "recording on, user notification only": [],
                       "recording off (same profile, no record list)": [], "strace -f -o /dev/null, recording off": []}
            for _ in range(file_runs):
                timings["recording on (docker profile)"].append(inside("docker", prepare, work_script))
                timings["recording on, user notification only"].append(inside("docker", prepare, work_script, env=notify_env))
                timings["recording off (same profile, no record list)"].append(inside(unrecorded, prepare, work_script))
                timings["strace -f -o /dev/null, recording off"].append(
                    inside(unrecorded, prepare, work_script, "strace -f -qq -o /dev/null "))
            report(f"{title}, timed inside the sandbox (target: recording under 1.15x of off, 1.3x at most)", timings,
                   ["recording off (same profile, no record list)"])

        # A program start costs what its execve's recording costs: 2,000 of /bin/true, per start.
        execs = 2000
        exec_script = f"for ((i = 0; i < {execs}; i++)); do /bin/true; done"
        timings = {"recording on (docker profile)": [], "recording off (same profile, no record list)": []}
        for _ in range(file_runs):
            timings["recording on (docker profile)"].append(inside("docker", "true", exec_script) * 1000 / execs)
            timings["recording off (same profile, no record list)"].append(inside(unrecorded, "true", exec_script) * 1000 / execs)
        report("fork and exec of /bin/true inside the sandbox, us per start (target: under 20 us more with recording)", timings,
               ["recording off (same profile, no record list)"])
        on = statistics.median(timings["recording on (docker profile)"])
        off = statistics.median(timings["recording off (same profile, no record list)"])
        table("what recording adds to one program start", ["us more with recording", "target"], [[f"{on - off:.1f}", "under 20"]])
    if only in ("", "images"):
        images_next_to_host(daemon)
    if only in ("", "attacks"):
        attacks_next_door(daemon)
    if not only:
        write_results()
finally:
    for cleanup in reversed(cleanups):
        try:
            cleanup()
        except Exception as error:  # keep cleaning
            print(f"bench cleanup: {error}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
