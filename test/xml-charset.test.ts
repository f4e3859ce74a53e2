// An XML body's own encoding, for a content-type without a charset (RFC 7303).

import t from 'tap'
import { byteOrderMark, isXmlType, xmlCharset } from '../src/routes/xml-charset.js'

t.test('a byte order mark, else the declaration, else nothing (UTF-8)', async (t) => {
  t.equal(xmlCharset(Buffer.from([0xEF, 0xBB, 0xBF, 0x3C])), 'utf-8')
  t.equal(xmlCharset(Buffer.from([0xFF, 0xFE, 0x3C, 0x00])), 'utf-16le')
  t.equal(xmlCharset(Buffer.from([0xFE, 0xFF, 0x00, 0x3C])), 'utf-16be')
  t.equal(xmlCharset(Buffer.from('<?xml version="1.0"?>', 'utf16le')), 'utf-16le', 'UTF-16 without a byte order mark')
  t.equal(xmlCharset(Buffer.from('<?xml version="1.0" encoding=\'ISO-8859-1\'?><a/>')), 'ISO-8859-1')
  t.equal(xmlCharset(Buffer.from('<?xml version="1.0" standalone="yes" encoding="windows-1252"?>')), 'windows-1252')
  t.equal(xmlCharset(Buffer.from('<?xml version="1.0"?><a encoding="latin1"/>')), undefined, 'an attribute later on is no declaration')
  t.equal(xmlCharset(Buffer.from('<a/>')), undefined)
  t.equal(xmlCharset(Buffer.alloc(0)), undefined)
})

t.test('a declaration of UTF-16 read as ASCII is not believed: the bytes say otherwise', async (t) => {
  t.equal(xmlCharset(Buffer.from('<?xml version="1.0" encoding="UTF-16"?><a/>')), undefined)
  t.equal(xmlCharset(Buffer.from('<?xml version="1.0" encoding="utf16"?><a/>')), undefined)
})

t.test('a byte order mark alone, for a body whose content-type names a charset', async (t) => {
  t.equal(byteOrderMark(Buffer.from([0xFF, 0xFE, 0x3C, 0x00])), 'utf-16le')
  t.equal(byteOrderMark(Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?>')), undefined, 'a declaration is not a byte order mark')
  t.equal(byteOrderMark(Buffer.from('<?xml version="1.0"?>', 'utf16le')), undefined)
})

t.test('XML media types', async (t) => {
  for (const type of ['application/xml', 'text/xml', 'application/atom+xml']) t.ok(isXmlType(type), type)
  for (const type of ['text/plain', 'application/xml-dtd', 'application/json']) t.notOk(isXmlType(type), type)
})
