import t from 'tap'
import { FrameDecoder, FrameError, encodeFrame } from '../../src/pool/frames.js'

function collect (max = 1024): { decoder: FrameDecoder, frames: string[] } {
  const frames: string[] = []
  const decoder = new FrameDecoder(max, (body) => { frames.push(body.toString()) })
  return { decoder, frames }
}

t.test('decodes a frame that arrives whole', async (t) => {
  const { decoder, frames } = collect()
  decoder.push(encodeFrame(Buffer.from('hello')))
  t.same(frames, ['hello'])
  t.equal(decoder.isMidFrame, false)
})

t.test('decodes a frame split across chunks, down to single bytes', async (t) => {
  const { decoder, frames } = collect()
  const frame = encodeFrame(Buffer.from('split across many chunks'))
  for (const byte of frame) decoder.push(Buffer.from([byte]))
  t.same(frames, ['split across many chunks'])
  t.equal(decoder.isMidFrame, false)
})

t.test('decodes many frames coalesced into one chunk, and a split tail', async (t) => {
  const { decoder, frames } = collect()
  const all = Buffer.concat(['one', 'two', 'three'].map((s) => encodeFrame(Buffer.from(s))))
  decoder.push(all.subarray(0, all.length - 2))
  t.same(frames, ['one', 'two'])
  t.equal(decoder.isMidFrame, true, 'the third frame is incomplete')
  decoder.push(all.subarray(all.length - 2))
  t.same(frames, ['one', 'two', 'three'])
})

t.test('decodes an empty frame', async (t) => {
  const { decoder, frames } = collect()
  decoder.push(encodeFrame(Buffer.alloc(0)))
  t.same(frames, [''])
})

t.test('refuses a length over the limit before reading the body', async (t) => {
  const { decoder, frames } = collect(10)
  const header = Buffer.alloc(4)
  header.writeUInt32BE(11)
  t.throws(() => { decoder.push(header) }, FrameError)
  t.same(frames, [])
})

t.test('treats garbage as an oversize length', async (t) => {
  const { decoder } = collect(1024)
  t.throws(() => { decoder.push(Buffer.from('this is not a frame at all')) }, /over the limit/)
})

t.test('gathers a large frame split over chunks into one body', async (t) => {
  const big = Buffer.alloc(200_000, 7)
  const frames: Buffer[] = []
  const decoder = new FrameDecoder(1 << 20, (body) => { frames.push(Buffer.from(body)) })
  const frame = encodeFrame(big)
  for (let i = 0; i < frame.length; i += 65536) decoder.push(frame.subarray(i, i + 65536))
  t.equal(frames.length, 1)
  t.ok(frames[0].equals(big))
})
