#!/usr/bin/env python3
"""Client conformance matrix: real third-party HTTP / media clients against a running jitmux.

Every check is compared with a reference full download made with curl (plain URL with the
Authorization header, and the signed URL with no header). One line per check:

    PASS|FAIL NAME: detail

(lines starting with '#' are information), exit status 1 if any check FAILs.

Checks (NAME is prefixed with --label):
  reference            curl GET of the plain URL (Bearer token) == curl GET of the signed URL
  aria2c/header        aria2c -x 8 -s 8 -k 1M --header "Authorization: ..."  == reference
  aria2c/signed        aria2c -x 8 -s 8 -k 1M SIGNED_URL (no header)         == reference
  wget-c/resume        first 37% taken with curl -r, then wget -c completes it  == reference
  curl-C/header        same with curl -C - (plain URL + header)
  curl-C/signed        same with curl -C - (signed URL)
  wget-mirror/requests wget -r -np of BASE/v1/files/ (HTML listings): every URL it requested
                       is under /v1/files/ and answered 2xx
  wget-mirror/files    set of mirrored .mp4 paths == set of files in the JSON listings
  wget-mirror/bytes    every mirrored .mp4 == direct curl GET
  wget-mirror/mtimes   mirrored files' mtimes == JSON `modified` (wget applies Last-Modified)
  rclone/lsl-sizes     rclone lsl :http:TREE_ROOT sizes == JSON listing sizes (same file set)
  rclone/lsl-mtimes    rclone lsl times == JSON `modified` == HEAD Last-Modified (to the second)
  rclone/copy          rclone copy of TREE_ROOT byte-identical to direct GETs
  rclone/cat           rclone cat --offset X --count N == reference[X:X+N] (several X, one near EOF)
  gst/playbin-eos      gst-launch-1.0 playbin uri=SIGNED_URL reaches EOS, exit 0, no ERROR
  gst/playbin-frames   number of video frames reaching playbin's video sink == source frame
                       count (ffprobe -count_frames on the playlist)
  ffmpeg-seek/...@T    ffmpeg -ss T -i URL -frames:v 1 (signed URL; plain URL with -headers)
                       decodes the same frame (MD5 of the raw frame) as the source at time T
                       (T measured from the first frame of the source, i.e. its format start,
                       which is where the MP4's timeline starts; expected frame = first source
                       frame with presentation time >= T, ffmpeg's accurate-seek semantics)
  http/head-vs-get     HEAD's ETag, Content-Length, Last-Modified == GET's (plain and signed)
  http/disposition     signed GET response: Content-Disposition names the file (filename="NAME")
  wget/content-disposition  wget --content-disposition SIGNED_URL saves NAME, byte-identical
  http/download=1      SIGNED_URL&download=1: Content-Disposition: attachment; filename="NAME"

Usage:
  client_matrix.py --base http://127.0.0.1:PORT --token TOKEN --tree-root /front/ \
      --file /front/2026-03-01/10-00-00.mp4 --signed-url URL --source /path/index.m3u8 \
      --label h264 --workdir DIR

Only python3's standard library; the clients (curl, aria2c, wget, rclone, gst-launch-1.0,
ffmpeg, ffprobe) are run by subprocess. Everything is written under WORKDIR/cm_LABEL (removed
and re-created at the start).
"""
import argparse
import concurrent.futures
import datetime
import email.utils
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse

TOKEN = None  # set in main; redacted from printed commands


# ----------------------------------------------------------------------------- helpers
class Result:
    def __init__(self, rc, out, err, secs, cmd):
        self.rc, self.out, self.err, self.secs, self.cmd = rc, out, err, secs, cmd

    def tail(self, n=3):
        lines = [l for l in (self.err or self.out or "").strip().splitlines() if l.strip()]
        return " | ".join(lines[-n:])


def show(cmd):
    """Shell form of a command for messages, with the API token redacted."""
    s = " ".join(shlex.quote(c) for c in cmd)
    if TOKEN:
        s = s.replace(TOKEN, "$TOKEN")
    return s.replace("\r\n", "\\r\\n")


def run(cmd, timeout=120, env=None, cwd=None, binary=False):
    t0 = time.monotonic()
    e = dict(os.environ)
    if env:
        e.update(env)
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=e, cwd=cwd,
                           stdin=subprocess.DEVNULL)
        out = p.stdout if binary else p.stdout.decode("utf-8", "replace")
        return Result(p.returncode, out, p.stderr.decode("utf-8", "replace"), time.monotonic() - t0, cmd)
    except subprocess.TimeoutExpired as ex:
        out = (ex.stdout or b"") if binary else (ex.stdout or b"").decode("utf-8", "replace")
        return Result(-9, out, f"timeout after {timeout}s " + (ex.stderr or b"").decode("utf-8", "replace"),
                      time.monotonic() - t0, cmd)
    except FileNotFoundError as ex:
        return Result(-127, b"" if binary else "", f"not installed: {ex}", time.monotonic() - t0, cmd)


def failed(r, what=""):
    return f"{what}exit {r.rc}: {r.tail()} [cmd: {show(r.cmd)}]"


def diff_bytes(got, want):
    """None if equal, else a description with the first differing offset."""
    if got == want:
        return None
    n = min(len(got), len(want))
    i = 0
    step = 1 << 16
    while i < n and got[i:i + step] == want[i:i + step]:
        i += step
    while i < n and got[i] == want[i]:
        i += 1
    if i < n:
        where = f"first differing byte at offset {i} (got 0x{got[i]:02x}, want 0x{want[i]:02x})"
    else:
        where = f"identical over the first {n} bytes, then one is longer"
    return f"{len(got)} bytes vs {len(want)} expected, {where}"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def sha(b):
    return hashlib.sha256(b).hexdigest()[:16]


def secs(t):
    return f"{t:.2f}s"


def tool_version(cmd, line=0):
    r = run(cmd, timeout=20)
    lines = [l for l in (r.out + r.err).splitlines() if l.strip()]
    if r.rc == -127 or not lines:
        return "NOT INSTALLED" if r.rc == -127 else f"? ({r.tail()})"
    return lines[min(line, len(lines) - 1)].strip()


def http_req(url, method="GET", headers=None, read_body=True):
    """(status, {lower-name: value}, body) with http.client (no redirects followed)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    path = u.path + ("?" + u.query if u.query else "")
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read() if read_body and method != "HEAD" else b""
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, hdrs, body


def parse_curl_headers(path):
    """Last header block of a curl -D dump: (status, {lower-name: value})."""
    text = open(path, "rb").read().decode("latin-1")
    blocks = [b for b in re.split(r"\r?\n\r?\n", text) if b.strip()]
    if not blocks:
        return None, {}
    lines = blocks[-1].splitlines()
    m = re.match(r"HTTP/\S+\s+(\d+)", lines[0])
    hdrs = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    return (int(m.group(1)) if m else None), hdrs


def to_epoch_s(dt):
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp() // 1)


def rfc3339_s(s):
    return to_epoch_s(datetime.datetime.fromisoformat(s.replace("Z", "+00:00")))


def http_date_s(s):
    return to_epoch_s(email.utils.parsedate_to_datetime(s))


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- the matrix
class Matrix:
    def __init__(self, a):
        self.a = a
        self.label = a.label
        self.nfail = 0
        self.npass = 0
        self.base = a.base.rstrip("/")
        self.auth = f"Authorization: Bearer {a.token}"
        self.file = a.file
        self.name = self.file.rstrip("/").rsplit("/", 1)[-1]
        self.url = self.files_url(self.file)
        self.signed = a.signed_url
        self.root = a.tree_root if a.tree_root.endswith("/") else a.tree_root + "/"
        if not self.root.startswith("/"):
            self.root = "/" + self.root
        self.work = os.path.join(os.path.abspath(a.workdir), f"cm_{self.label}")
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        self.ref = None
        self.direct = {}  # tree path -> bytes of a direct curl GET

    # -- reporting
    def check(self, name, ok, detail):
        status = "PASS" if ok else "FAIL"
        if ok:
            self.npass += 1
        else:
            self.nfail += 1
        if TOKEN:
            detail = detail.replace(TOKEN, "$TOKEN")
        print(f"{status} {self.label}/{name}: {detail}", flush=True)

    def info(self, msg):
        print(f"# {msg}", flush=True)

    def d(self, *parts):
        p = os.path.join(self.work, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def files_url(self, tree_path):
        return self.base + "/v1/files" + urllib.parse.quote(tree_path, safe="/")

    # -- curl GETs
    def curl_get(self, url, out, hdr=(), extra=()):
        """curl GET to a file; None on a 200, else a message with the status and the body's first line."""
        r = run(["curl", "-sS", *hdr, *extra, "-o", out, "-w", "%{http_code}", url])
        if r.rc != 0:
            return failed(r, "curl ")
        if r.out.strip() != "200":
            body = open(out, "rb").read(300).decode("utf-8", "replace").strip() if os.path.exists(out) else ""
            return f"HTTP {r.out.strip()} {body!r} [cmd: {show(r.cmd)}]"
        return None

    # -- direct GETs (curl) of tree paths, cached
    def get_direct(self, tree_path):
        if tree_path in self.direct:
            return self.direct[tree_path], None
        out = self.d("direct", tree_path.strip("/").replace("/", "__"))
        err = self.curl_get(self.files_url(tree_path), out, ["-H", self.auth])
        if err:
            return None, "direct GET: " + err
        self.direct[tree_path] = read(out)
        return self.direct[tree_path], None

    def walk_json(self, root):
        """{path relative to root: entry} for every file below root, from the JSON listings."""
        files = {}
        todo = [root]
        while todo:
            dpath = todo.pop()
            st, _, body = http_req(self.files_url(dpath), headers={"Authorization": f"Bearer {self.a.token}",
                                                                   "Accept": "application/json"})
            if st != 200:
                raise RuntimeError(f"JSON listing of {dpath}: HTTP {st}: {body[:200]!r}")
            for e in json.loads(body)["entries"]:
                if e["type"] == "dir":
                    todo.append(dpath + e["name"].strip("/") + "/")
                else:
                    files[(dpath + e["name"])[len(root):]] = e
        return files

    # ------------------------------------------------------------------ reference
    def reference(self):
        """Reference downloads. Returns False (nothing to compare with) only if neither URL works."""
        t0 = time.monotonic()
        plain = self.d("ref", "plain.mp4")
        signed = self.d("ref", "signed.mp4")
        e1 = self.curl_get(self.url, plain, ["-H", self.auth], ["-D", plain + ".hdr"])
        e2 = self.curl_get(self.signed, signed, (), ["-D", signed + ".hdr"])
        problems = []
        if e1:
            problems.append(f"plain URL: {e1}")
        if e2:
            problems.append(f"signed URL: {e2}")
        if e1 and e2:
            self.check("reference", False, "; ".join(problems))
            return False
        self.get_status, self.get_hdrs = parse_curl_headers(plain + ".hdr") if not e1 else (None, {})
        self.sget_status, self.sget_hdrs = parse_curl_headers(signed + ".hdr") if not e2 else (None, {})
        self.ref = read(plain) if not e1 else read(signed)
        self.direct[self.file] = self.ref
        if not e1 and not e2:
            dd = diff_bytes(read(signed), self.ref)
            if dd:
                problems.append(f"signed URL body differs from plain: {dd}")
        for kind, h in (("plain", self.get_hdrs), ("signed", self.sget_hdrs)):
            if h and h.get("content-length") != str(len(self.ref)):
                problems.append(f"{kind}: Content-Length {h.get('content-length')} but {len(self.ref)} bytes received")
        self.check("reference", not problems,
                   "; ".join(problems) or f"{len(self.ref)} bytes sha256 {sha(self.ref)}, plain == signed, "
                                          f"{secs(time.monotonic() - t0)}")
        return True

    # ------------------------------------------------------------------ 1. aria2c
    def aria2c(self):
        for kind, url, hdr in (("header", self.url, ["--header", self.auth]), ("signed", self.signed, [])):
            out_dir = self.d("aria2c", kind, "x")[:-2]
            log = self.d("aria2c", f"{kind}.log")
            cmd = ["aria2c", "-x", "8", "-s", "8", "-k", "1M", *hdr, "-d", out_dir, "-o", self.name,
                   "--allow-overwrite=true", "--auto-file-renaming=false", "--file-allocation=none",
                   "--console-log-level=error", "--summary-interval=0", "--download-result=hide",
                   f"--log={log}", "--log-level=debug", url]
            r = run(cmd, timeout=60)
            if r.rc != 0:
                self.check(f"aria2c/{kind}", False, failed(r))
                continue
            got = read(os.path.join(out_dir, self.name))
            dd = diff_bytes(got, self.ref)
            ranges = []
            try:
                ranges = re.findall(r"^Range: bytes=(\S+)", open(log, errors="replace").read(), re.M)
            except OSError:
                pass
            self.check(f"aria2c/{kind}", dd is None,
                       dd or f"{len(got)} bytes identical, {secs(r.secs)}, {1 + len(ranges)} GETs "
                             f"(ranged: {', '.join(ranges) or 'none'})")

    # ------------------------------------------------------------------ 2. resume
    def partial(self, path, frac):
        k = int(len(self.ref) * frac)
        r = run(["curl", "-sS", "-f", "-r", f"0-{k - 1}", "-H", self.auth, "-o", path, self.url])
        if r.rc != 0:
            return None, failed(r, "curl -r: ")
        dd = diff_bytes(read(path), self.ref[:k])
        if dd:
            return None, f"curl -r 0-{k - 1} part differs: {dd}"
        return k, None

    def resume(self):
        # wget -c
        d = os.path.dirname(self.d("wget-c", "x"))
        path = os.path.join(d, self.name)
        k, err = self.partial(path, 0.37)
        if err:
            self.check("wget-c/resume", False, err)
        else:
            log = self.d("wget-c.log")
            r = run(["wget", "-c", "-S", "--header", self.auth, "-P", d, "-o", log, self.url], timeout=60)
            text = open(log, errors="replace").read()
            statuses = re.findall(r"^\s*HTTP/\S+ (\d+)", text, re.M)
            if r.rc != 0:
                self.check("wget-c/resume", False, failed(r) + " log: " + " | ".join(text.strip().splitlines()[-3:]))
            else:
                got = read(path)
                dd = diff_bytes(got, self.ref)
                files = sorted(os.listdir(d))
                problems = [dd] if dd else []
                if "206" not in statuses:
                    problems.append(f"wget did not get a 206 (statuses {statuses})")
                if files != [self.name]:
                    problems.append(f"files in dir: {files}")
                self.check("wget-c/resume", not problems,
                           "; ".join(problems) or f"resumed at byte {k}/{len(self.ref)}, server statuses "
                                                  f"{'/'.join(statuses)}, identical, {secs(r.secs)}")
        # curl -C -
        for kind, url, hdr in (("header", self.url, ["-H", self.auth]), ("signed", self.signed, [])):
            path = self.d("curl-C", kind, self.name)
            k, err = self.partial(path, 0.61 if kind == "signed" else 0.37)
            if err:
                self.check(f"curl-C/{kind}", False, err)
                continue
            r = run(["curl", "-sS", "-f", "-C", "-", *hdr, "-o", path, "-w", "%{http_code} %{size_download}", url])
            if r.rc != 0:
                self.check(f"curl-C/{kind}", False, failed(r))
                continue
            got = read(path)
            dd = diff_bytes(got, self.ref)
            code, _, nbytes = r.out.partition(" ")
            problems = [dd] if dd else []
            if code != "206":
                problems.append(f"status {code}, expected 206")
            self.check(f"curl-C/{kind}", not problems,
                       "; ".join(problems) or f"resumed at byte {k}: {code}, {nbytes} bytes more, identical, "
                                              f"{secs(r.secs)}")

    # ------------------------------------------------------------------ 3. wget mirror
    def mirror(self):
        d = os.path.dirname(self.d("mirror", "x"))
        log = self.d("mirror.log")
        start = self.base + "/v1/files/"
        cut = len([p for p in urllib.parse.urlsplit(start).path.split("/") if p])
        cmd = ["wget", "-r", "-np", "-l", "inf", "-nH", f"--cut-dirs={cut}", "-e", "robots=off",
               "--header", self.auth, "-P", d, "-o", log, start]
        r = run(cmd, timeout=120)
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        # Requested URLs and the status each got.
        reqs = []
        for line in text.splitlines():
            m = re.match(r"^--\d{4}-\d\d-\d\d \d\d:\d\d:\d\d--\s+(\S+)", line)
            if m:
                reqs.append([m.group(1), None])
                continue
            m = re.search(r"request sent, awaiting response\.\.\. (\d{3})", line)
            if m and reqs and reqs[-1][1] is None:
                reqs[-1][1] = int(m.group(1))
        bu = urllib.parse.urlsplit(self.base)
        outside, bad = [], []
        for u, st in reqs:
            s = urllib.parse.urlsplit(u)
            if (s.scheme, s.netloc) != (bu.scheme, bu.netloc) or \
                    not urllib.parse.unquote(s.path).startswith("/v1/files/"):
                outside.append(u)
            if st is None or not 200 <= st < 300:
                bad.append(f"{u} -> {st}")
        problems = []
        if r.rc != 0:
            problems.append(failed(r))
        if outside:
            problems.append(f"requested outside /v1/files/: {outside}")
        if bad:
            problems.append(f"non-2xx: {bad}")
        if not reqs:
            problems.append("no requests found in wget log")
        self.check("wget-mirror/requests", not problems,
                   "; ".join(problems) or f"{len(reqs)} requests all under /v1/files/ and 2xx, {secs(r.secs)}: "
                                          + " ".join(urllib.parse.urlsplit(u).path for u, _ in reqs))
        # Mirrored .mp4 files vs the JSON listings.
        mirrored = {}
        for dp, _, fns in os.walk(d):
            for fn in fns:
                if fn.endswith(".mp4"):
                    rel = "/" + os.path.relpath(os.path.join(dp, fn), d).replace(os.sep, "/")
                    mirrored[rel] = os.path.join(dp, fn)
        try:
            listed = {"/" + p: e for p, e in self.walk_json("/").items()}
        except Exception as ex:  # noqa: BLE001
            self.check("wget-mirror/files", False, f"JSON walk failed: {ex}")
            return
        listed_mp4 = {p: e for p, e in listed.items()}
        missing = sorted(set(listed_mp4) - set(mirrored))
        extra = sorted(set(mirrored) - set(listed_mp4))
        self.check("wget-mirror/files", not missing and not extra,
                   f"missing {missing}, extra {extra}" if missing or extra
                   else f"{len(mirrored)} .mp4 files = JSON listings: {sorted(mirrored)}")
        problems, ok = [], 0
        for p, fp in sorted(mirrored.items()):
            want, err = self.get_direct(p)
            if err:
                problems.append(f"{p}: {err}")
                continue
            dd = diff_bytes(read(fp), want)
            if dd:
                problems.append(f"{p}: {dd}")
            else:
                ok += 1
        self.check("wget-mirror/bytes", not problems and ok > 0,
                   "; ".join(problems) or f"{ok} files byte-identical to direct GETs")
        problems = []
        for p, fp in sorted(mirrored.items()):
            if p in listed:
                want = rfc3339_s(listed[p]["modified"])
                got = int(os.stat(fp).st_mtime)
                if got != want:
                    problems.append(f"{p}: mtime {iso(got)} vs modified {listed[p]['modified']}")
        self.check("wget-mirror/mtimes", not problems,
                   "; ".join(problems) or f"{len(mirrored)} mtimes == JSON modified")

    # ------------------------------------------------------------------ 4. rclone
    def rclone_cmd(self, *args):
        return ["rclone", *args, "--http-url", self.base + "/v1/files/",
                "--http-headers", f"Authorization,Bearer {self.a.token}"]

    def rclone(self):
        conf = self.d("rclone.conf")
        open(conf, "w").close()
        env = {"TZ": "UTC", "RCLONE_CONFIG": conf}
        remote_root = ":http:" + self.root.lstrip("/")
        try:
            listed = self.walk_json(self.root)
        except Exception as ex:  # noqa: BLE001
            self.check("rclone/lsl-sizes", False, f"JSON walk of {self.root} failed: {ex}")
            return
        r = run(self.rclone_cmd("lsl", remote_root), env=env, timeout=60)
        if r.rc != 0:
            self.check("rclone/lsl-sizes", False, failed(r))
        else:
            got = {}
            for line in r.out.splitlines():
                parts = line.split(None, 3)
                if len(parts) == 4:
                    got[parts[3]] = (int(parts[0]), parts[1] + " " + parts[2])
            problems = []
            if set(got) != set(listed):
                problems.append(f"rclone paths {sorted(got)} != JSON {sorted(listed)}")
            for p in sorted(set(got) & set(listed)):
                if got[p][0] != listed[p]["size"]:
                    problems.append(f"{p}: rclone size {got[p][0]} vs JSON {listed[p]['size']}")
            self.check("rclone/lsl-sizes", not problems,
                       "; ".join(problems) or f"{len(got)} files, sizes equal "
                                              f"({', '.join(f'{p}={v[0]}' for p, v in sorted(got.items()))}), "
                                              f"{secs(r.secs)}")
            problems = []
            for p in sorted(set(got) & set(listed)):
                rt = datetime.datetime.strptime(got[p][1][:19], "%Y-%m-%d %H:%M:%S")
                rs = to_epoch_s(rt)
                js = rfc3339_s(listed[p]["modified"])
                st, h, _ = http_req(self.files_url(self.root + p), "HEAD",
                                    {"Authorization": f"Bearer {self.a.token}"})
                lm = h.get("last-modified")
                ls = http_date_s(lm) if lm else None
                if not (rs == js == ls):
                    problems.append(f"{p}: rclone {got[p][1]} / JSON modified {listed[p]['modified']} / "
                                    f"HEAD({st}) Last-Modified {lm}")
            self.check("rclone/lsl-mtimes", not problems and bool(got),
                       "; ".join(problems) or f"{len(got)} files: rclone time == JSON modified == Last-Modified "
                                              f"({', '.join(p + '=' + listed[p]['modified'] for p in sorted(got))})")
        # rclone copy
        d = os.path.dirname(self.d("rclone-copy", "x"))
        r = run(self.rclone_cmd("copy", remote_root, d), env=env, timeout=120)
        if r.rc != 0:
            self.check("rclone/copy", False, failed(r))
        else:
            copied = {}
            for dp, _, fns in os.walk(d):
                for fn in fns:
                    copied[os.path.relpath(os.path.join(dp, fn), d).replace(os.sep, "/")] = os.path.join(dp, fn)
            problems = []
            if set(copied) != set(listed):
                problems.append(f"copied {sorted(copied)} != JSON {sorted(listed)}")
            ok = 0
            for p in sorted(set(copied) & set(listed)):
                want, err = self.get_direct(self.root + p)
                dd = err or diff_bytes(read(copied[p]), want)
                if dd:
                    problems.append(f"{p}: {dd}")
                else:
                    ok += 1
            self.check("rclone/copy", not problems and ok > 0,
                       "; ".join(problems) or f"{ok} files byte-identical, {secs(r.secs)}")
        # rclone cat --offset --count
        n = len(self.ref)
        cases = [(0, 4096), (n // 3 + 12345, 65536), (n // 2 + 7, 1), (n - 1000, 1000), (n - 100, 4096),
                 (n - 5000, None)]
        remote_file = ":http:" + self.file.lstrip("/")
        problems, done, total = [], [], 0.0
        for off, cnt in cases:
            args = ["cat", remote_file, "--offset", str(off)] + (["--count", str(cnt)] if cnt is not None else [])
            r = run(self.rclone_cmd(*args), env=env, timeout=60, binary=True)
            total += r.secs
            want = self.ref[off:off + cnt] if cnt is not None else self.ref[off:]
            if r.rc != 0:
                problems.append(f"offset {off} count {cnt}: " + failed(r))
                continue
            dd = diff_bytes(r.out, want)
            if dd:
                problems.append(f"offset {off} count {cnt}: {dd} [cmd: {show(r.cmd)}]")
            else:
                done.append(f"{off}+{len(want)}")
        self.check("rclone/cat", not problems,
                   "; ".join(problems) or f"{len(done)} ranges equal ({', '.join(done)}; file {n} bytes), "
                                          f"{secs(total)}")

    # ------------------------------------------------------------------ source analysis (background)
    def source_framemd5(self):
        out = self.d("src_v.framemd5")
        r = run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-flags2", "+skip_manual", "-copyts",
                 "-i", self.a.source, "-map", "0:v:0", "-fps_mode", "passthrough", "-enc_time_base", "-1",
                 "-f", "framemd5", out], timeout=300)
        if r.rc != 0:
            return None, failed(r)
        tb = None
        frames = []
        for line in open(out):
            m = re.match(r"#tb 0: (\d+)/(\d+)", line)
            if m:
                tb = int(m.group(1)) / int(m.group(2))
            if line.startswith("#") or not line.strip():
                continue
            f = [x.strip() for x in line.split(",")]
            frames.append((int(f[2]) * tb, f[5]))
        frames.sort(key=lambda x: x[0])
        return {"frames": frames, "secs": r.secs}, None

    def source_count(self):
        r = run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                 "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", self.a.source], timeout=300)
        if r.rc != 0:
            return None, failed(r)
        try:
            return (int(r.out.strip().splitlines()[0].strip(",")), r.secs), None
        except (ValueError, IndexError):
            return None, f"unexpected ffprobe output {r.out!r}"

    def source_info(self):
        r = run(["ffprobe", "-v", "error", "-show_entries", "format=start_time:stream=index,codec_type,start_time",
                 "-of", "json", self.a.source], timeout=60)
        if r.rc != 0:
            return None, failed(r)
        j = json.loads(r.out)
        fmt_start = float(j["format"]["start_time"])
        r2 = run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                  "packet=pts_time,flags", "-of", "csv=p=0", self.a.source], timeout=120)
        if r2.rc != 0:
            return None, failed(r2)
        kf = []
        for line in r2.out.splitlines():
            p = line.split(",")
            if len(p) >= 2 and "K" in p[1] and p[0] not in ("", "N/A"):
                kf.append(float(p[0]))
        return {"fmt_start": fmt_start, "keyframes": sorted(kf)}, None

    # ------------------------------------------------------------------ 5. GStreamer
    def gst(self, src_count):
        cmd = ["gst-launch-1.0", "-v", "playbin", f"uri={self.signed}",
               "video-sink=fakesink sync=false silent=false name=vsink",
               "audio-sink=fakesink sync=false"]
        r = run(cmd, timeout=120)
        text = r.out + r.err
        frames = len(re.findall(r"vsink: last-message = chain", text))
        errors = [l for l in text.splitlines() if re.search(r"^ERROR|ERROR: from element|^WARNING: from element", l)]
        eos = "Got EOS from element" in text
        ok = r.rc == 0 and eos and not errors
        self.check("gst/playbin-eos", ok,
                   f"EOS, exit 0, {secs(r.secs)}" if ok
                   else f"exit {r.rc}, EOS {'seen' if eos else 'NOT seen'}, errors: {errors[:3]} [cmd: {show(cmd)}]")
        count, err = src_count
        if err:
            self.check("gst/playbin-frames", False, f"source count failed: {err}")
        else:
            n, t = count
            self.check("gst/playbin-frames", frames == n,
                       f"{frames} video frames reached playbin's sink, source has {n} "
                       f"(ffprobe -count_frames {secs(t)})")

    # ------------------------------------------------------------------ 6. ffmpeg -ss
    def ffmpeg_seek(self, src_frames, src_info):
        if src_frames[1] or src_info[1]:
            self.check("ffmpeg-seek", False, f"source analysis failed: {src_frames[1] or src_info[1]}")
            return
        info = src_info[0]
        fmt_start = info["fmt_start"]
        frames = [(t - fmt_start, h) for t, h in src_frames[0]["frames"]]
        if len(frames) < 10:
            self.check("ffmpeg-seek", False, f"source has only {len(frames)} video frames")
            return
        times = [t for t, _ in frames]
        dur = (times[-1] - times[0]) / (len(times) - 1)
        kf = [k - fmt_start for k in info["keyframes"]]

        def nearest(t):
            return min(range(len(times)), key=lambda i: abs(times[i] - t))

        kfi = sorted({nearest(k) for k in kf})
        # T1: just before a keyframe at ~25%: expect that keyframe (seek lands on a sync sample).
        k1 = min(kfi, key=lambda i: abs(i - len(times) // 4))
        # T2: in the middle of the GOP starting at the keyframe nearest 50%: accurate seek decodes up to it.
        k2 = min(kfi, key=lambda i: abs(i - len(times) // 2))
        nxt = [i for i in kfi if i > k2]
        gop = (nxt[0] - k2) if nxt else 30
        m2 = k2 + max(1, gop // 2)
        # T3: near the end, a few frames before the last.
        m3 = len(times) - 1 - min(7, len(times) // 10)
        targets = [(k1, "keyframe"), (m2, f"mid-GOP (keyframe #{k2} + {m2 - k2})"), (m3, "near end")]
        for i, what in targets:
            T = times[i] - dur / 4  # a quarter frame before frame i: first frame >= T is frame i
            T = round(T, 6)
            exp_i = next(j for j in range(len(times)) if times[j] >= T)
            want = frames[exp_i][1]
            for kind, url, hdr in (("signed", self.signed, []),
                                   ("header", self.url, ["-headers", self.auth + "\r\n"])):
                cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-flags2", "+skip_manual",
                       *hdr, "-ss", f"{T:.6f}", "-i", url, "-map", "0:v:0", "-frames:v", "1",
                       "-fps_mode", "passthrough", "-f", "framemd5", "-"]
                r = run(cmd, timeout=60)
                name = f"ffmpeg-seek/{kind}@{T:.3f}s"
                lines = [l for l in r.out.splitlines() if l and not l.startswith("#")]
                if r.rc != 0 or not lines:
                    self.check(name, False, failed(r) if r.rc else f"no frame decoded [cmd: {show(cmd)}]")
                    continue
                got = lines[-1].split(",")[-1].strip()
                if got == want:
                    self.check(name, True, f"{what}: frame #{exp_i} (t={times[exp_i]:.4f}s) md5 {got}, "
                                           f"{secs(r.secs)}")
                else:
                    hit = [j for j, (_, h) in enumerate(frames) if h == got]
                    where = (f"got source frame #{hit[0]} (t={times[hit[0]]:.4f}s, {hit[0] - exp_i:+d} frames)"
                             if hit else "got a frame that is not in the source")
                    self.check(name, False, f"{what}: expected frame #{exp_i} (t={times[exp_i]:.4f}s) md5 {want}, "
                                            f"{where} md5 {got} [cmd: {show(cmd)}]")

    # ------------------------------------------------------------------ 7. headers / disposition
    def headers(self):
        auth = {"Authorization": f"Bearer {self.a.token}"}
        for kind, url, h, gst, gh in (("plain", self.url, auth, self.get_status, self.get_hdrs),
                                      ("signed", self.signed, {}, self.sget_status, self.sget_hdrs)):
            st, hh, _ = http_req(url, "HEAD", h)
            problems = []
            if st != 200:
                problems.append(f"HEAD status {st}")
            for k in ("etag", "content-length", "last-modified"):
                if hh.get(k) != gh.get(k) or not hh.get(k):
                    problems.append(f"{k}: HEAD {hh.get(k)!r} vs GET {gh.get(k)!r}")
            if kind == "signed" and gh.get("etag") != self.get_hdrs.get("etag"):
                problems.append(f"signed ETag {gh.get('etag')} != plain ETag {self.get_hdrs.get('etag')}")
            self.check(f"http/head-vs-get-{kind}", not problems,
                       "; ".join(problems) or f"ETag {gh.get('etag')}, Content-Length {gh.get('content-length')}, "
                                              f"Last-Modified {gh.get('last-modified')}")
        # Content-Disposition on the signed GET
        cd = self.sget_hdrs.get("content-disposition")
        fn = re.search(r'filename="([^"]*)"', cd or "")
        ok = bool(fn) and fn.group(1) == self.name and not (cd or "").lower().startswith("attachment")
        self.check("http/disposition", ok,
                   f"signed GET Content-Disposition: {cd!r}" + ("" if ok else f", expected inline; filename=\"{self.name}\""))
        # wget --content-disposition
        d = os.path.dirname(self.d("wget-cd", "x"))
        log = self.d("wget-cd.log")
        r = run(["wget", "-S", "--content-disposition", "-P", d, "-o", log, self.signed], timeout=60)
        files = sorted(os.listdir(d))
        if r.rc != 0:
            tail = " | ".join(l.strip() for l in open(log, errors="replace").read().strip().splitlines()[-4:])
            self.check("wget/content-disposition", False, failed(r) + f", files {files}, log: {tail}")
        elif files != [self.name]:
            self.check("wget/content-disposition", False, f"saved as {files}, expected [{self.name!r}] "
                                                          f"[cmd: {show(r.cmd)}]")
        else:
            dd = diff_bytes(read(os.path.join(d, self.name)), self.ref)
            self.check("wget/content-disposition", dd is None, dd or f"saved as {self.name}, identical")
        # &download=1
        durl = self.signed + ("&" if "?" in self.signed else "?") + "download=1"
        problems, seen = [], []
        for method, hh in (("HEAD", {}), ("GET", {"Range": "bytes=0-99"})):
            st, h, body = http_req(durl, method, hh)
            cd = h.get("content-disposition")
            seen.append(f"{method} {st} {cd!r}")
            fn = re.search(r'filename="([^"]*)"', cd or "")
            if st not in (200, 206) or not (cd or "").lower().startswith("attachment") or not fn \
                    or fn.group(1) != self.name:
                problems.append(f"{method} {durl} -> {st}, Content-Disposition {cd!r} "
                                f"(expected attachment; filename=\"{self.name}\")" + (f" body {body[:120]!r}" if st >= 400 else ""))
            if method == "GET" and st == 206 and body != self.ref[:100]:
                problems.append(f"GET bytes=0-99 with download=1: {diff_bytes(body, self.ref[:100])}")
        self.check("http/download=1", not problems, "; ".join(problems) or "; ".join(seen))


def main():
    global TOKEN
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--tree-root", default="/")
    ap.add_argument("--file", required=True, help="tree path of the recording, e.g. /front/2026-03-01/10-00-00.mp4")
    ap.add_argument("--signed-url", required=True)
    ap.add_argument("--source", required=True, help="the HLS playlist the recording was imported from")
    ap.add_argument("--label", default="rec")
    ap.add_argument("--workdir", default="/tmp/client_matrix")
    a = ap.parse_args()
    TOKEN = a.token
    t0 = time.monotonic()

    for name, cmd, line in (("curl", ["curl", "--version"], 0), ("aria2c", ["aria2c", "--version"], 0),
                            ("wget", ["wget", "--version"], 0), ("rclone", ["rclone", "version"], 0),
                            ("gstreamer", ["gst-launch-1.0", "--version"], 1),
                            ("ffmpeg", ["ffmpeg", "-version"], 0), ("ffprobe", ["ffprobe", "-version"], 0)):
        print(f"# version {name}: {tool_version(cmd, line)}", flush=True)
    m = Matrix(a)
    m.info(f"label {a.label}: {m.url} (signed {a.signed_url.split('?')[0]}?...), tree root {m.root}, "
           f"source {a.source}, workdir {m.work}")

    # Source analysis (decodes) runs in the background while the HTTP clients run.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    f_md5 = pool.submit(m.source_framemd5)
    f_count = pool.submit(m.source_count)
    f_info = pool.submit(m.source_info)

    timings = []

    def step(name, fn, *args):
        t = time.monotonic()
        try:
            fn(*args)
        except Exception as ex:  # noqa: BLE001 - a crashing step is a failing check, not a traceback
            m.check(name, False, f"checker raised {type(ex).__name__}: {ex}")
        timings.append(f"{name} {time.monotonic() - t:.1f}s")

    if m.reference():
        step("aria2c", m.aria2c)
        step("resume", m.resume)
        step("wget-mirror", m.mirror)
        step("rclone", m.rclone)
        step("headers", m.headers)
        step("gst", lambda: m.gst(f_count.result()))
        step("ffmpeg-seek", lambda: m.ffmpeg_seek(f_md5.result(), f_info.result()))
        md5 = f_md5.result()
        if md5[0]:
            m.info(f"source: {len(md5[0]['frames'])} video frames decoded to framemd5 in {secs(md5[0]['secs'])}")
    pool.shutdown(wait=True)
    m.info(f"timings: {', '.join(timings)}")
    m.info(f"{a.label}: {m.npass} passed, {m.nfail} failed, {time.monotonic() - t0:.1f}s total")
    sys.exit(1 if m.nfail else 0)


if __name__ == "__main__":
    main()
