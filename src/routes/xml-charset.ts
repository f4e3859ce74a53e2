// The charset of an XML body. RFC 7303 §3 (for application/xml, text/xml and +xml
// types alike): a byte order mark wins, even over the content-type's charset; with no
// charset either, the document says, as XML 1.0's Appendix F does: the encoding its
// XML declaration names, else UTF-8. A Latin-1 export with <?xml ... encoding=
// "ISO-8859-1"?> sent without a charset would otherwise be read as UTF-8 and refused.

/** Whether a media type is XML's (application/xml, text/xml, or a +xml suffix). */
export function isXmlType (type: string): boolean {
  return type === 'application/xml' || type === 'text/xml' || type.endsWith('+xml')
}

/** The encoding a byte order mark at the start names, if there is one. */
export function byteOrderMark (bytes: Buffer): string | undefined {
  const [b0, b1, b2] = bytes
  if (b0 === 0xEF && b1 === 0xBB && b2 === 0xBF) return 'utf-8'
  if (b0 === 0xFF && b1 === 0xFE) return 'utf-16le'
  if (b0 === 0xFE && b1 === 0xFF) return 'utf-16be'
  return undefined
}

/** The encoding the document itself says it is in; undefined for UTF-8 without a BOM or declaration. */
export function xmlCharset (bytes: Buffer): string | undefined {
  const marked = byteOrderMark(bytes)
  if (marked !== undefined) return marked
  const [b0, b1, b2, b3] = bytes
  // '<?' in UTF-16 without a byte order mark
  if (b0 === 0x3C && b1 === 0x00 && b2 === 0x3F && b3 === 0x00) return 'utf-16le'
  if (b0 === 0x00 && b1 === 0x3C && b2 === 0x00 && b3 === 0x3F) return 'utf-16be'
  // Any encoding that can name itself in a declaration writes these bytes as ASCII.
  const head = bytes.subarray(0, 512).toString('latin1')
  const declared = /^<\?xml\s[^>]*?\bencoding\s*=\s*(["'])([A-Za-z][A-Za-z0-9._-]*)\1/.exec(head)?.[2]
  // A declaration read as ASCII is not in UTF-16, whatever it says (a UTF-16 document
  // starts with a byte order mark or with '<' as two bytes, found above): UTF-8 then.
  return declared !== undefined && /^utf-?16/i.test(declared) ? undefined : declared
}
