// gold.mjs - what the make-golden scripts share: the VTGOLD1 file format that
// tests/nn/golden.h reads, and golden.h's nearest-neighbour resampling rule.

// The bytes of a .gold file: "VTGOLD1\0", u32 output count, then per output u32 name length,
// the name, u32 rank, rank x i64 dims, the values as f32 (row-major), all little-endian.
// outputs: [{ name, shape, data }] (data: any array of numbers; int32 and bool become floats).
export function goldBuffer(outputs) {
  const u32 = (x) => { const b = Buffer.alloc(4); b.writeUInt32LE(x >>> 0); return b; };
  const parts = [Buffer.from('VTGOLD1\0', 'latin1'), u32(outputs.length)];
  for (const o of outputs) {
    const nameBytes = Buffer.from(o.name, 'utf8');
    if (nameBytes.length >= 128) throw new Error(`output name too long: ${o.name}`);
    if (o.shape.length > 6) throw new Error(`rank > 6: ${o.name}`);
    parts.push(u32(nameBytes.length), nameBytes, u32(o.shape.length));
    const dims = Buffer.alloc(8 * o.shape.length);
    o.shape.forEach((d, i) => dims.writeBigInt64LE(BigInt(d), 8 * i));
    parts.push(dims);
    const f = Float32Array.from(o.data);
    const count = o.shape.reduce((a, b) => a * b, 1);
    if (f.length !== count) throw new Error(`size mismatch for ${o.name}`);
    const db = Buffer.alloc(4 * f.length);
    for (let i = 0; i < f.length; i++) db.writeFloatLE(f[i], 4 * i);
    parts.push(db);
  }
  return Buffer.concat(parts);
}

// golden.h's nearest-neighbour rule: destination index d of dstSize samples srcSize at
// floor((2d + 1) * srcSize / (2 * dstSize)).
export const nearest = (d, srcSize, dstSize) => Math.floor(((2 * d + 1) * srcSize) / (2 * dstSize));
