// shm.js: the client's side of Triton's system shared-memory extension (docs/protocol.md)
// in Node on Linux, without a native addon. Loaded by yololoss.js only when it uses shared
// memory (a dynamic import: browsers never load it).
//
// On Linux a POSIX shared-memory object named "/name" is the file /dev/shm/name (glibc's
// shm_open opens exactly that path, on a tmpfs), so Node creates one with open(2) and
// ftruncate(2). It cannot map it (no mmap in Node), but it does not need to: the inputs are
// written into the object with pwrite and the gradients read back with pread at their
// offsets, each one copy through the tmpfs page cache, the very pages the daemon maps. The
// bytes never cross the socket.
//
// As the Python client: the object is created with mode 0600 (the daemon must run as the
// same user, or registration fails and the client falls back to the wire) and unlinked as
// soon as its registration has been answered: the daemon has mapped it by then and this
// process holds its descriptor, so nothing is left in /dev/shm when either side dies. Only
// while the registration request is in flight does the file exist; an 'exit' handler
// removes such files should the process exit then.

import { closeSync, existsSync, ftruncateSync, openSync, readSync, unlinkSync,
  writeSync } from "node:fs";
import { randomBytes } from "node:crypto";

/** Where POSIX shared-memory objects live; without it there is no shared memory here. */
export const SHM_DIR = "/dev/shm";
export const available = () => process.platform === "linux" && existsSync(SHM_DIR);

// The files this process created and has not unlinked yet (only during a registration).
const linked = new Set();
process.on("exit", () => {
  for (const p of linked) {
    try { unlinkSync(p); } catch { /* gone already */ }
  }
});

let counter = 0;
const CHUNK = 1 << 30; // Node's fs calls take at most 2 GiB - 1 bytes at once

/** One shared-memory object of `size` bytes, open read-write here. .name is the region name
 * to register, .key the object's name for the daemon's shm_open. */
export class Region {
  constructor(size) {
    this.size = Math.max(size, 4096);
    const token = randomBytes(6).toString("hex");
    this.key = `/yololoss-js-${process.pid}-${token}`;
    this.name = `yololoss-js-${process.pid}-${counter++}-${token}`;
    this._path = SHM_DIR + this.key;
    // O_RDWR | O_CREAT | O_EXCL: never someone else's object
    this.fd = openSync(this._path, "wx+", 0o600);
    linked.add(this._path);
    try {
      ftruncateSync(this.fd, this.size);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Write the bytes of a typed array at offset (pwrite; the whole of it). */
  write(offset, view) {
    const u8 = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    for (let done = 0; done < u8.length;) {
      done += writeSync(this.fd, u8, done, Math.min(CHUNK, u8.length - done), offset + done);
    }
  }

  /** n bytes from offset, in a fresh ArrayBuffer (aligned for any typed array). */
  read(offset, n) {
    const buf = new ArrayBuffer(n);
    const u8 = new Uint8Array(buf);
    for (let done = 0; done < n;) {
      const got = readSync(this.fd, u8, done, Math.min(CHUNK, n - done), offset + done);
      if (got === 0) throw new RangeError(`shared-memory object ${this.key}: ends before ${offset + n}`);
      done += got;
    }
    return buf;
  }

  /** Remove the object's name (this descriptor and the daemon's mapping stay valid). */
  unlink() {
    if (linked.delete(this._path)) {
      try { unlinkSync(this._path); } catch { /* gone already */ }
    }
  }

  close() {
    this.unlink();
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

// Regions a client registered and has not unregistered: released (unregistered, their
// descriptors closed) when the client is garbage-collected or when the event loop empties
// at the end of the program ('beforeExit'), as the Python client's finalizer does. An
// explicit process.exit() skips this (no request can be made from 'exit'): the daemon keeps
// such a region until it is unregistered or the daemon exits. The records hold a release
// function made of the client's URL and token, never the client itself.
const records = new Set();
const collected = new FinalizationRegistry((rec) => releaseAll(rec));

function releaseAll(rec) {
  records.delete(rec);
  const regions = [...rec.regions];
  rec.regions.clear();
  return Promise.all(regions.map((r) => rec.release(r)));
}

process.on("beforeExit", () => {
  // releasing makes requests, after which the loop empties again and this runs again with
  // nothing left to do
  for (const rec of [...records]) if (rec.regions.size) releaseAll(rec);
});

/** The record of client's registered regions: .add(region), .delete(region).
 * release(region): unregisters it and closes it. */
export function leftovers(client, release) {
  const rec = { regions: new Set(), release };
  records.add(rec);
  collected.register(client, rec);
  return {
    add: (r) => { rec.regions.add(r); records.add(rec); },
    delete: (r) => {
      rec.regions.delete(r);
      if (rec.regions.size === 0) records.delete(rec); // a closed client: nothing to keep
    },
  };
}
