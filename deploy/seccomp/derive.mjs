#!/usr/bin/env node
// Derives deploy/seccomp/agate.json, agate's Localhost seccomp profile, from a
// container runtime's default profile: the same rules, plus io_uring_setup,
// io_uring_enter and io_uring_register allowed. Runtime defaults refuse those
// three (ENOSYS here), and agate then runs on epoll (engine.backend: auto).
// The base this file was made from is podman's, /usr/share/containers/seccomp.json
// (Debian 12, golang-github-containers-common 0.50.1); the profile format is the
// one runc, crun, containerd and the kubelet's Localhost profiles read.
// Usage: node deploy/seccomp/derive.mjs [BASE] > deploy/seccomp/agate.json
import fs from 'node:fs';

const IO_URING = ['io_uring_enter', 'io_uring_register', 'io_uring_setup'];
const base = JSON.parse(fs.readFileSync(process.argv[2] || '/usr/share/containers/seccomp.json', 'utf8'));
if (!Array.isArray(base.syscalls) || !base.defaultAction) throw new Error('not a seccomp profile: no syscalls or defaultAction');

// A base that names them in a refusing rule would win over ours in some
// runtimes' order of evaluation: take them out of every rule first.
const syscalls = base.syscalls
  .map((r) => ({ ...r, names: r.names.filter((n) => !IO_URING.includes(n)) }))
  .filter((r) => r.names.length > 0);
syscalls.push({ names: IO_URING, action: 'SCMP_ACT_ALLOW', args: [], comment: 'agate: the io_uring engine', includes: {}, excludes: {} });
process.stdout.write(`${JSON.stringify({ ...base, syscalls }, null, 2)}\n`);
