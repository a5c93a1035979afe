import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listTar, readTarMember, TarFormatError, TarNameError, tarBytes, writeTar } from './tar.ts';

const longName = `${'deep/'.repeat(30)}sample-with-a-long-name.txt`; // > 100 bytes: needs pax / GNU long names

test('tar: archives we write extract with GNU tar to the same bytes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tar-w-'));
  try {
    const entries = [
      { name: 'a.txt', data: Buffer.from('hello\n') },
      { name: 'img/000001.png', data: new Uint8Array(1000).map((_, i) => i % 251) },
      { name: 'empty.txt', data: new Uint8Array(0) },
      { name: longName, data: Buffer.from('long') },
    ];
    await writeTar(join(dir, 'x.tar'), entries);
    execFileSync('tar', ['-xf', join(dir, 'x.tar'), '-C', dir]);
    for (const e of entries)
      assert.deepEqual(new Uint8Array(await readFile(join(dir, e.name))), new Uint8Array(e.data));
    // And we read our own archive back.
    const members = await listTar(join(dir, 'x.tar'));
    assert.deepEqual(
      members.map((m) => m.name),
      entries.map((e) => e.name),
    );
    for (const [i, m] of members.entries())
      assert.deepEqual(
        new Uint8Array(await readTarMember(join(dir, 'x.tar'), m)),
        new Uint8Array(entries[i].data),
      );
    // Byte-reproducible.
    assert.deepEqual(tarBytes(entries), tarBytes(entries));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('tar: archives from GNU tar (gnu and pax formats) list and read correctly', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tar-r-'));
  try {
    const src = join(dir, 'src');
    await mkdir(join(src, 'deep/'.repeat(30)), { recursive: true });
    await writeFile(join(src, longName), 'long');
    await writeFile(join(src, '0001.txt'), 'a caption\n');
    await writeFile(join(src, '0001.jpg'), Buffer.alloc(1500, 7));
    for (const format of ['gnu', 'pax', 'ustar']) {
      const files = format === 'ustar' ? ['0001.txt', '0001.jpg'] : ['0001.txt', '0001.jpg', longName];
      execFileSync('tar', ['-cf', join(dir, `${format}.tar`), `--format=${format}`, '-C', src, ...files]);
      const members = await listTar(join(dir, `${format}.tar`));
      assert.deepEqual(
        members.map((m) => m.name),
        files,
        format,
      );
      const jpg = members.find((m) => m.name === '0001.jpg')!;
      assert.deepEqual(await readTarMember(join(dir, `${format}.tar`), jpg), Buffer.alloc(1500, 7));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('tar: a corrupt or truncated archive raises TarFormatError; bad names are refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tar-bad-'));
  try {
    const good = tarBytes([{ name: 'a.txt', data: Buffer.alloc(2000, 1) }]);
    const flipped = good.slice();
    flipped[10] ^= 0xff; // inside the name: checksum no longer matches
    await writeFile(join(dir, 'flipped.tar'), flipped);
    await assert.rejects(
      listTar(join(dir, 'flipped.tar')),
      (e: unknown) => e instanceof TarFormatError && /checksum/.test(e.message),
    );
    await writeFile(join(dir, 'short.tar'), good.subarray(0, 1024));
    await assert.rejects(
      listTar(join(dir, 'short.tar')),
      (e: unknown) => e instanceof TarFormatError && /past the end/.test(e.message),
    );
    assert.throws(() => tarBytes([{ name: '/abs', data: new Uint8Array(1) }]), TarNameError);
    assert.throws(() => tarBytes([{ name: '', data: new Uint8Array(1) }]), TarNameError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
