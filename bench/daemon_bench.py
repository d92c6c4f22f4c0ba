#!/usr/bin/python3
"""The daemon's task start time and memory, against `ctr run --rm` in the same run.

Starts the test harness (private containerd and registry) and the stand-in control plane, runs
`ecs-node-agent daemon` against them, and measures:
  1. payload sent -> RUNNING state change received, one-container task (cached image, host
     network, `sh -c :`), median of ROUNDS, alternating with `ctr run --rm` of the same image
     and command; ratio ours/ctr (target <= 1.0; the real agent through Docker is ~1.35x);
  2. ten such tasks (sleeping) in one PayloadMessage -> all ten RUNNING; ratio to one task
     (target <= 3x; the real agent: 706 ms for ten, 206 ms for one);
  3. the daemon's RSS idle (registered, ACS connected) and with the ten tasks running
     (targets <= 16 MB and <= 24 MB; the real agent: 39 MB and 48 MB);
  4. recovery: twenty bridge tasks answering on their host ports, the daemon killed with -9, a
     new one started: how long it takes to take them over (target < 1 s), and whether all twenty
     still answer on the same ports.

usage: bench/daemon_bench.py [BUILD_DIR] [ROUNDS]
BENCH_VERBOSE=1 adds RSS by mapping and a timeline of the ten; BENCH_PERF=DIR records the whole
machine with `perf record -a` while each set of ten starts (DIR/ours-ten.data, DIR/ctr-ten.data;
`perf report -i FILE --sort comm` then says which processes the CPU went to; the recording starts
0.5 s before the payload, so the idle "swapper" share includes that lead-in).
"""
import json
import re
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
AGENT = os.path.join(ROOT, BUILD, "agent/cli/ecs-node-agent")
STANDIN = os.path.join(ROOT, "tests/support/fake_control_plane/server.py")
NAMESPACE = "bench-daemon"
BRIDGE = "ecs-bench-br"
ACCESS_KEY, SECRET_KEY, REGION = "AKIDBENCH", "bench/secret", "us-west-2"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(port, path, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        if e.code == 408:  # a /wait that timed out: what matched so far
            return json.loads(e.read() or b"{}")
        raise


def wait(port, filt, count=1, timeout_ms=120000):
    answer = control(port, "/wait", dict(filt, count=count, timeout_ms=timeout_ms),
                     timeout=timeout_ms / 1000 + 10)
    if len(answer.get("events", [])) < count:
        raise RuntimeError(f"timed out waiting for {count} x {filt}")
    return answer["events"]


def rss_kib(pid, field="VmRSS"):
    """VmRSS, or RssAnon (the agent's own memory) / RssFile (mapped binaries and libraries)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_ms(pid):
    """User plus system CPU time of a process so far, in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def perf_start(name):
    """With BENCH_PERF set, `perf record -a` into BENCH_PERF/NAME.data until perf_stop()."""
    directory = os.environ.get("BENCH_PERF")
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    perf = subprocess.Popen(["perf", "record", "-a", "-q", "-o",
                             os.path.join(directory, name + ".data")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf has opened its events on every CPU
    return perf


def perf_stop(perf):
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()


def rss_by_mapping(pid):
    """Resident KiB per mapped file ("[anon]" for private memory), largest first."""
    sizes, name = {}, "[anon]"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = os.path.basename(head[5]) if len(head) > 5 and head[5].startswith("/") \
                    else "[anon]"
            elif head[0] == "Rss:":
                sizes[name] = sizes.get(name, 0) + int(head[1])
    return sorted(sizes.items(), key=lambda kv: -kv[1])


def web_task(n):
    """A bridge-mode task whose httpd publishes port 80 on a dynamic host port."""
    return {"arn": f"arn:aws:ecs:{REGION}:123456789012:task/bench/{n:032x}",
            "family": "bench-web", "version": "1", "desiredStatus": "RUNNING",
            "networkMode": "bridge",
            "containers": [{"name": "web", "image": IMAGE, "essential": True, "memory": 32,
                            "stopTimeout": 2,
                            "portMappings": [{"containerPort": 80, "hostPort": 0,
                                              "protocol": "tcp"}],
                            "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html"
                                        " && exec httpd -f -p 80 -h /www"]}]}


def answers(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.read() == b"ok\n"
    except OSError:
        return False


def task(n, command):
    return {"arn": f"arn:aws:ecs:{REGION}:123456789012:task/bench/{n:032x}",
            "family": "bench", "version": "1", "desiredStatus": "RUNNING",
            "networkMode": "host",
            "containers": [{"name": "app", "image": IMAGE, "essential": True, "memory": 32,
                            "command": command}]}


def main():
    global IMAGE
    work = tempfile.mkdtemp(prefix="ecs-daemon-bench.")
    subprocess.run(["bash", "tests/harness/harness.sh", "up", work], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    env_file = dict(line.strip().split("=", 1) for line in open(os.path.join(work, "harness.env"))
                    if "=" in line)
    IMAGE = env_file["ECS_TEST_REGISTRY"] + "/test/busybox:oci"
    address = env_file["ECS_TEST_CONTAINERD_ADDRESS"]
    ports_file = os.path.join(work, "standin.json")
    standin = subprocess.Popen(["/usr/bin/python3", STANDIN, "--ports-file", ports_file,
                                "--region", REGION, "--access-key", ACCESS_KEY,
                                "--secret-key", SECRET_KEY], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    daemon = None
    agent_env = None
    try:
        for _ in range(200):
            if os.path.exists(ports_file):
                break
            time.sleep(0.05)
        ports = json.load(open(ports_file))
        api, ctl = ports["api_port"], ports["control_port"]
        # As ACS and TCS do: heartbeats keep the sessions from timing out mid-run.
        control(ctl, "/settings", {"acs_heartbeat_interval_ms": 10000,
                                   "tcs_heartbeat_interval_ms": 10000})
        agent_env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                         AWS_SESSION_TOKEN="", AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION,
                         AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null",
                         AWS_SHARED_CREDENTIALS_FILE="/dev/null",
                         ECS_BACKEND_HOST=f"http://127.0.0.1:{api}", ECS_CLUSTER="bench",
                         ECS_CONTAINERD_ADDRESS=address, ECS_CONTAINERD_NAMESPACE=NAMESPACE,
                         ECS_DATADIR=os.path.join(work, "data"), ECS_LOGLEVEL=os.environ.get("BENCH_LOGLEVEL", "warn"),
                         ECS_BRIDGE_NAME=BRIDGE, ECS_BRIDGE_SUBNET="172.31.254.0/24",
                         ECS_IMAGE_PULL_BEHAVIOR="prefer-cached",
                         ECS_STOP_TASKS_ON_EXIT="true",
                         ECS_TASK_ENDPOINT_PORT=str(free_port()),
                         ECS_INTROSPECTION_PORT=str(free_port()))
        subprocess.run([AGENT, "images", "pull", IMAGE], env=agent_env, check=True,
                       stdout=subprocess.DEVNULL)
        daemon = subprocess.Popen([AGENT, "daemon"], env=agent_env, stdout=subprocess.DEVNULL,
                                  stderr=open(os.path.join(work, "daemon.log"), "w"))
        wait(ctl, {"kind": "connect", "channel": "acs", "accepted": True})
        time.sleep(2)  # let start-up allocations settle
        idle = rss_kib(daemon.pid)
        idle_anon = rss_kib(daemon.pid, "RssAnon")
        if os.environ.get("BENCH_VERBOSE"):
            for name, kib in rss_by_mapping(daemon.pid)[:25]:
                print(f"  idle rss {name:48} {kib:6d} KiB")

        def ours(n):
            after = control(ctl, "/stats")["last_seq"]
            arn = task(n, ["sh", "-c", ":"])["arn"]
            t0 = time.monotonic()
            control(ctl, "/acs/send", {"message": {"type": "PayloadMessage",
                                                   "message": {"tasks": [task(n, ["sh", "-c", ":"])]}},
                                       "fill": True})
            wait(ctl, {"kind": "api", "op": "SubmitTaskStateChange", "after": after,
                       "match": {"task": arn, "status": "RUNNING"}})
            took = (time.monotonic() - t0) * 1000
            wait(ctl, {"kind": "api", "op": "SubmitTaskStateChange", "after": after,
                       "match": {"task": arn, "status": "STOPPED"}})
            return took

        def ctr(n):
            t0 = time.monotonic()
            subprocess.run(["ctr", "-a", address, "-n", NAMESPACE, "run", "--rm", IMAGE,
                            f"bench-ctr-{n}", "sh", "-c", ":"], check=True,
                           stdout=subprocess.DEVNULL)
            return (time.monotonic() - t0) * 1000

        ours(1000), ctr(1000)  # warm both paths
        ours_ms, ctr_ms = [], []
        for i in range(ROUNDS):
            ctr_ms.append(ctr(i))
            ours_ms.append(ours(i))
        one, base = statistics.median(ours_ms), statistics.median(ctr_ms)

        after = control(ctl, "/stats")["last_seq"]
        ten = [task(2000 + i, ["sleep", "3600"]) for i in range(10)]
        containerd_pid = int(open(os.path.join(work, "pids", "containerd")).read())
        cpu_before = cpu_ms(daemon.pid), cpu_ms(containerd_pid)
        perf = perf_start("ours-ten")
        t0 = time.monotonic()
        control(ctl, "/acs/send", {"message": {"type": "PayloadMessage",
                                               "message": {"tasks": ten}}, "fill": True})
        wait(ctl, {"kind": "api", "op": "SubmitTaskStateChange", "after": after,
                   "match": {"status": "RUNNING"}}, count=10)
        ten_ms = (time.monotonic() - t0) * 1000
        perf_stop(perf)
        if os.environ.get("BENCH_VERBOSE"):
            print(f"  CPU for the ten: agent {cpu_ms(daemon.pid) - cpu_before[0]:.0f} ms, "
                  f"containerd {cpu_ms(containerd_pid) - cpu_before[1]:.0f} ms")
            sent = control(ctl, "/events", {"kind": "sent", "after": after})["events"]
            calls = control(ctl, "/events", {"kind": "api", "op": "SubmitTaskStateChange",
                                             "after": after})["events"]
            start = sent[0]["time"] if sent else 0
            for e in calls:
                print(f"  +{(e['time'] - start) * 1000:7.1f} ms {e['body']['task'][-4:]} "
                      f"{e['body']['status']}")
        time.sleep(2)
        busy = rss_kib(daemon.pid)
        busy_anon = rss_kib(daemon.pid, "RssAnon")
        for t in ten:
            t["desiredStatus"] = "STOPPED"
        after = control(ctl, "/stats")["last_seq"]
        control(ctl, "/acs/send", {"message": {"type": "PayloadMessage",
                                               "message": {"tasks": ten}}, "fill": True})
        wait(ctl, {"kind": "api", "op": "SubmitTaskStateChange", "after": after,
                   "match": {"status": "STOPPED"}}, count=10)

        # The machine's own floor for ten at once: ten `ctr run -d` started together, until all
        # ten report RUNNING.
        names = [f"bench-ten-{i}" for i in range(10)]
        perf = perf_start("ctr-ten")
        t0 = time.monotonic()
        procs = [subprocess.Popen(["ctr", "-a", address, "-n", NAMESPACE, "run", "-d", IMAGE, n,
                                   "sleep", "3600"], stdout=subprocess.DEVNULL) for n in names]
        for p in procs:
            p.wait()
        ctr_ten_ms = (time.monotonic() - t0) * 1000
        perf_stop(perf)
        for n in names:
            subprocess.run(["ctr", "-a", address, "-n", NAMESPACE, "tasks", "kill", "-s", "KILL", n],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n in names:
            for _ in range(100):
                if subprocess.run(["ctr", "-a", address, "-n", NAMESPACE, "tasks", "rm", n],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                    break
                time.sleep(0.05)
            subprocess.run(["ctr", "-a", address, "-n", NAMESPACE, "containers", "rm", n],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        # Recovery: twenty bridge tasks answering on their ports; kill -9; a new daemon takes them
        # over (time from its start to "took over", as it logs it and as seen from outside).
        twenty = [web_task(3000 + i) for i in range(20)]
        after = control(ctl, "/stats")["last_seq"]
        control(ctl, "/acs/send", {"message": {"type": "PayloadMessage",
                                               "message": {"tasks": twenty}}, "fill": True})
        events = wait(ctl, {"kind": "api", "op": "SubmitTaskStateChange", "after": after,
                            "match": {"status": "RUNNING"}}, count=20)
        host_ports = [e["body"]["containers"][0]["networkBindings"][0]["hostPort"]
                      for e in events]
        deadline = time.monotonic() + 60
        while not all(answers(p) for p in host_ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the twenty bridge tasks do not all answer")
            time.sleep(0.2)
        daemon.kill()
        daemon.wait(timeout=30)
        restart_log = os.path.join(work, "daemon-restart.log")
        after = control(ctl, "/stats")["last_seq"]
        t0 = time.monotonic()
        daemon = subprocess.Popen([AGENT, "daemon"], env=dict(agent_env, ECS_LOGLEVEL="info"),
                                  stdout=subprocess.DEVNULL, stderr=open(restart_log, "w"))
        took_over = None
        while took_over is None:
            if time.monotonic() - t0 > 120:
                raise RuntimeError("the restarted daemon did not take the tasks over")
            match = re.search(r"took over (\d+) task\(s\) in (\d+) ms", open(restart_log).read())
            if match:
                took_over = (int(match.group(1)), int(match.group(2)))
            else:
                time.sleep(0.01)
        restart_ms = (time.monotonic() - t0) * 1000
        answering = sum(answers(p) for p in host_ports)
        for t in twenty:
            t["desiredStatus"] = "STOPPED"
        wait(ctl, {"kind": "connect", "channel": "acs", "accepted": True, "after": after})
        after = control(ctl, "/stats")["last_seq"]
        control(ctl, "/acs/send", {"message": {"type": "PayloadMessage",
                                               "message": {"tasks": twenty}}, "fill": True})
        wait(ctl, {"kind": "api", "op": "SubmitTaskStateChange", "after": after,
                   "match": {"status": "STOPPED"}}, count=20)

        print(f"{'measure':48} {'value':>10} {'baseline':>10} {'ratio':>7} target")
        print(f"{'payload -> RUNNING, one task (median of %d)' % ROUNDS:48} {one:8.0f}ms "
              f"{base:8.0f}ms {one / base:7.2f} <= 1.0 x ctr run --rm")
        print(f"{'payload -> all RUNNING, ten tasks':48} {ten_ms:8.0f}ms {one:8.0f}ms "
              f"{ten_ms / one:7.2f} <= 3 x one task")
        print(f"{'payload -> all RUNNING, ten tasks':48} {ten_ms:8.0f}ms {ctr_ten_ms:8.0f}ms "
              f"{ten_ms / ctr_ten_ms:7.2f} (vs ten `ctr run -d` started at once)")
        print(f"{'daemon RSS idle':48} {idle / 1024:8.1f}MB {39:8.0f}MB {idle / 1024 / 39:7.2f} "
              f"<= 16 MB (real agent 39 MB)")
        print(f"{'  of which its own memory (RssAnon)':48} {idle_anon / 1024:8.1f}MB")
        print(f"{'daemon RSS, ten tasks running':48} {busy / 1024:8.1f}MB {48:8.0f}MB "
              f"{busy / 1024 / 48:7.2f} <= 24 MB (real agent 48 MB)")
        print(f"{'  of which its own memory (RssAnon)':48} {busy_anon / 1024:8.1f}MB")
        print("(RSS less RssAnon is mapped from disk: the binary, which carries its libraries, "
              "and glibc)")
        print(f"{'restart after kill -9, 20 bridge tasks: adopted':48} {took_over[1]:8.0f}ms "
              f"{'':>10} {'':>7} < 1 s ({took_over[0]} tasks in the store, 20 running; as logged)")
        print(f"{'  from exec to adopted, seen from outside':48} {restart_ms:8.0f}ms "
              f"(includes registration)")
        print(f"{'  tasks answering on their ports after':48} {answering:8d}/20")
    except Exception:
        log = os.path.join(work, "daemon.log")
        if os.path.exists(log):
            sys.stderr.write("daemon log (last lines):\n" + "".join(open(log).readlines()[-30:]))
        raise
    finally:
        if os.environ.get("BENCH_KEEP_LOG"):
            log = os.path.join(work, "daemon.log")
            if os.path.exists(log):
                import shutil
                shutil.copy(log, os.environ["BENCH_KEEP_LOG"])
        if daemon:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
        standin.terminate()
        standin.wait(timeout=30)
        if agent_env:
            subprocess.run([AGENT, "network", "teardown"], env=agent_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["ctr", "-a", address, "-n", NAMESPACE, "images", "rm", "--sync", IMAGE],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["bash", "tests/harness/harness.sh", "down", work], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
