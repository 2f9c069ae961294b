/**
 * The few DNS messages the tunnel speaks, on Uint8Array (the core runs in
 * browsers, where dns-packet's Buffer does not exist): a query for one name
 * with an EDNS0 OPT record, a response with TXT, SOA or NS records, and the
 * decoding of both. The gateway parses incoming queries with dns-packet and
 * builds its responses here, because dns-packet neither compresses names
 * nor checks their lengths.
 *
 * Invariants: every name written has labels of 1..63 octets and at most 255
 * octets in all, else encoding throws; owner and rdata names are compressed
 * against names already written (RFC 1035 §4.1.4); decoding follows only
 * pointers to earlier offsets, so a compression loop cannot hang it, and
 * never reads past the end (DnsMessageError instead).
 */
import { RemessengerError } from "../wire/errors.ts";
import { ErrorCode } from "../wire/proto.ts";

export const DNS_TYPE_A = 1;
export const DNS_TYPE_NS = 2;
export const DNS_TYPE_SOA = 6;
export const DNS_TYPE_TXT = 16;
export const DNS_TYPE_AAAA = 28;
export const DNS_TYPE_OPT = 41;
export const DNS_TYPE_ANY = 255;
export const DNS_CLASS_IN = 1;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

/** Without EDNS0 a UDP response is at most 512 bytes (RFC 1035). */
export const DNS_UDP_DEFAULT_BYTES = 512;
/** The EDNS0 buffer size of DNS Flag Day 2020; what the tunnel asks for. */
export const EDNS_BUFFER_BYTES = 1232;
export const MAX_NAME_WIRE_BYTES = 255;
const MAX_LABEL_BYTES = 63;
const HEADER_BYTES = 12;

/** Bytes that are not the DNS message the tunnel expects (BAD_FRAME). */
export class DnsMessageError extends RemessengerError {
  override readonly name = "DnsMessageError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_BAD_FRAME, message, options);
  }
}

export interface SoaData {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

export type RecordData =
  { type: "TXT"; strings: Uint8Array[] } | { type: "SOA"; soa: SoaData } | { type: "NS"; ns: string };

export interface ResourceRecord {
  name: string;
  ttl: number;
  data: RecordData;
}

export interface DnsQuestion {
  name: string;
  type: number;
}

/** Growable byte writer with name compression. */
class Writer {
  private buffer: Uint8Array;
  length = 0;
  /** Lower-case name suffix → offset where it was written. */
  private readonly names = new Map<string, number>();

  /** `initialBytes`: room for the usual message, so writing it never copies the buffer. */
  constructor(initialBytes = 512) {
    this.buffer = new Uint8Array(initialBytes);
  }

  private ensure(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
  }

  u8(value: number): void {
    this.ensure(1);
    this.buffer[this.length++] = value & 0xff;
  }

  u16(value: number): void {
    this.u8(value >>> 8);
    this.u8(value);
  }

  u32(value: number): void {
    this.u16((value >>> 16) & 0xffff);
    this.u16(value & 0xffff);
  }

  bytes(value: Uint8Array): void {
    this.ensure(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
  }

  setU16(at: number, value: number): void {
    this.buffer[at] = (value >>> 8) & 0xff;
    this.buffer[at + 1] = value & 0xff;
  }

  /** Writes a name, compressed against earlier names when `compress` (then also registers its suffixes). */
  name(name: string, compress = true): void {
    if (compress) {
      // The common case, an owner name that repeats the question: one lookup, no suffixes built.
      const known = this.names.get(name.replace(/\.$/, "").toLowerCase());
      if (known !== undefined) {
        this.u16(0xc000 | known);
        return;
      }
    }
    const labels = splitName(name);
    checkNameLength(labels);
    for (let i = 0; i < labels.length; i += 1) {
      const label = labels[i] ?? "";
      if (compress) {
        const suffix = labels.slice(i).join(".").toLowerCase();
        const known = this.names.get(suffix);
        if (known !== undefined) {
          this.u16(0xc000 | known);
          return;
        }
        if (this.length < 0x4000) this.names.set(suffix, this.length);
      }
      this.u8(label.length);
      this.ensure(label.length);
      for (let j = 0; j < label.length; j += 1) {
        const code = label.charCodeAt(j);
        if (code < 0x21 || code > 0x7e)
          throw new DnsMessageError(`label ${JSON.stringify(label)} is not printable ASCII`);
        this.buffer[this.length++] = code;
      }
    }
    this.u8(0);
  }

  /**
   * Registers the name at the start of `raw` (uncompressed wire labels, as
   * echoed from a query) at `offset`, for compression. Offsets come from the
   * bytes themselves, so labels with any octets stay exact.
   */
  registerRawName(raw: Uint8Array, offset: number): void {
    // The whole name as text (lower case, "." and "\\" inside a label escaped), built once;
    // each suffix is a slice of it from a label's start.
    const codes: number[] = [];
    const labels: { textAt: number; at: number }[] = [];
    for (let at = 0; at < raw.length;) {
      const length = raw[at] ?? 0;
      if (length === 0 || length > MAX_LABEL_BYTES) break;
      if (labels.length > 0) codes.push(0x2e);
      labels.push({ textAt: codes.length, at: offset + at });
      for (let i = at + 1; i < at + 1 + length; i += 1) {
        const code = raw[i] ?? 0;
        if (code === 0x2e || code === 0x5c) codes.push(0x5c);
        codes.push(code >= 0x41 && code <= 0x5a ? code + 0x20 : code);
      }
      at += 1 + length;
    }
    const text = String.fromCharCode.apply(null, codes);
    for (let i = labels.length - 1; i >= 0; i -= 1) {
      const label = labels[i];
      if (label === undefined) break;
      const suffix = text.slice(label.textAt);
      if (label.at < 0x4000 && !this.names.has(suffix)) this.names.set(suffix, label.at);
    }
  }

  result(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

function splitName(name: string): string[] {
  const trimmed = name.replace(/\.$/, "");
  return trimmed === "" ? [] : trimmed.split(".");
}

function checkNameLength(labels: readonly string[]): void {
  let wire = 1;
  for (const label of labels) {
    if (label.length === 0 || label.length > MAX_LABEL_BYTES) {
      throw new DnsMessageError(`label of ${label.length} octets (1..${MAX_LABEL_BYTES} allowed)`);
    }
    wire += label.length + 1;
  }
  if (wire > MAX_NAME_WIRE_BYTES) throw new DnsMessageError(`name of ${wire} octets (at most ${MAX_NAME_WIRE_BYTES})`);
}

/** The wire bytes of a name, uncompressed, after checking its lengths. */
export function encodeName(name: string): Uint8Array {
  const writer = new Writer();
  writer.name(name, false);
  return writer.result();
}

export interface DnsQueryOptions {
  id: number;
  name: string;
  type: number;
  /** EDNS0 UDP payload size to advertise; no OPT record when undefined. */
  ednsUdpBytes?: number;
  recursionDesired?: boolean;
}

export function encodeDnsQuery(options: DnsQueryOptions): Uint8Array {
  const writer = new Writer();
  writer.u16(options.id & 0xffff);
  writer.u16(options.recursionDesired === false ? 0 : 0x0100);
  writer.u16(1);
  writer.u16(0);
  writer.u16(0);
  writer.u16(options.ednsUdpBytes === undefined ? 0 : 1);
  writer.name(options.name, false);
  writer.u16(options.type);
  writer.u16(DNS_CLASS_IN);
  if (options.ednsUdpBytes !== undefined) writeOpt(writer, options.ednsUdpBytes);
  return writer.result();
}

function writeOpt(writer: Writer, udpBytes: number): void {
  writer.u8(0); // root owner
  writer.u16(DNS_TYPE_OPT);
  writer.u16(udpBytes);
  writer.u32(0); // extended rcode, version 0, flags
  writer.u16(0); // no options
}

export interface DnsResponseOptions {
  id: number;
  /** The question exactly as the query had it (name bytes, type, class): echoed byte for byte (0x20). */
  questionRaw?: Uint8Array;
  rcode: number;
  isAuthoritative: boolean;
  recursionDesired: boolean;
  isTruncated?: boolean;
  answers?: readonly ResourceRecord[];
  authority?: readonly ResourceRecord[];
  /** Our EDNS0 UDP size, when the query had an OPT record. */
  ednsUdpBytes?: number;
}

export function encodeDnsResponse(options: DnsResponseOptions): Uint8Array {
  // Tunnel answers fill a 1232-byte EDNS0 payload.
  const writer = new Writer(EDNS_BUFFER_BYTES + 64);
  const answers = options.answers ?? [];
  const authority = options.authority ?? [];
  writer.u16(options.id & 0xffff);
  let flags = 0x8000; // QR
  if (options.isAuthoritative) flags |= 0x0400;
  if (options.isTruncated === true) flags |= 0x0200;
  if (options.recursionDesired) flags |= 0x0100;
  flags |= options.rcode & 0x0f;
  writer.u16(flags);
  writer.u16(options.questionRaw === undefined ? 0 : 1);
  writer.u16(answers.length);
  writer.u16(authority.length);
  writer.u16(options.ednsUdpBytes === undefined ? 0 : 1);
  if (options.questionRaw !== undefined) {
    writer.registerRawName(options.questionRaw, HEADER_BYTES);
    writer.bytes(options.questionRaw);
  }
  for (const record of [...answers, ...authority]) writeRecord(writer, record);
  if (options.ednsUdpBytes !== undefined) writeOpt(writer, options.ednsUdpBytes);
  return writer.result();
}

function writeRecord(writer: Writer, record: ResourceRecord): void {
  writer.name(record.name);
  const { data } = record;
  writer.u16(data.type === "TXT" ? DNS_TYPE_TXT : data.type === "SOA" ? DNS_TYPE_SOA : DNS_TYPE_NS);
  writer.u16(DNS_CLASS_IN);
  writer.u32(record.ttl);
  const lengthAt = writer.length;
  writer.u16(0);
  switch (data.type) {
    case "TXT":
      for (const string of data.strings) {
        if (string.length > 255) throw new DnsMessageError("a TXT string holds at most 255 bytes");
        writer.u8(string.length);
        writer.bytes(string);
      }
      break;
    case "SOA":
      writer.name(data.soa.mname);
      writer.name(data.soa.rname);
      writer.u32(data.soa.serial);
      writer.u32(data.soa.refresh);
      writer.u32(data.soa.retry);
      writer.u32(data.soa.expire);
      writer.u32(data.soa.minimum);
      break;
    case "NS":
      writer.name(data.ns);
      break;
  }
  const rdLength = writer.length - lengthAt - 2;
  if (rdLength > 0xffff) throw new DnsMessageError("record data over 65535 bytes");
  writer.setU16(lengthAt, rdLength);
}

/** Bytes → TXT character-strings of at most 255 bytes. */
export function toTxtStrings(bytes: Uint8Array): Uint8Array[] {
  const strings: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += 255) strings.push(bytes.subarray(at, at + 255));
  if (strings.length === 0) strings.push(new Uint8Array(0));
  return strings;
}

/** TXT character-strings → their bytes concatenated. */
export function fromTxtStrings(strings: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const string of strings) total += string.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const string of strings) {
    out.set(string, at);
    at += string.length;
  }
  return out;
}

class Reader {
  readonly bytes: Uint8Array;
  at: number;

  constructor(bytes: Uint8Array, at = 0) {
    this.bytes = bytes;
    this.at = at;
  }

  need(n: number): void {
    if (this.at + n > this.bytes.length) throw new DnsMessageError("message truncated");
  }

  u8(): number {
    this.need(1);
    return this.bytes[this.at++] ?? 0;
  }

  u16(): number {
    return (this.u8() << 8) | this.u8();
  }

  u32(): number {
    return ((this.u16() << 16) | this.u16()) >>> 0;
  }

  take(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  /** A name; follows compression pointers to earlier offsets only. */
  name(): string {
    const labels: string[] = [];
    let at = this.at;
    let end: number | undefined;
    let wire = 1;
    let lowest = at;
    for (;;) {
      if (at >= this.bytes.length) throw new DnsMessageError("name runs past the end");
      const length = this.bytes[at] ?? 0;
      if (length === 0) {
        at += 1;
        break;
      }
      if ((length & 0xc0) === 0xc0) {
        if (at + 1 >= this.bytes.length) throw new DnsMessageError("name runs past the end");
        const target = ((length & 0x3f) << 8) | (this.bytes[at + 1] ?? 0);
        if (target >= lowest) throw new DnsMessageError("compression pointer does not point backwards");
        end ??= at + 2;
        lowest = target;
        at = target;
        continue;
      }
      if ((length & 0xc0) !== 0) throw new DnsMessageError("unknown label type");
      if (at + 1 + length > this.bytes.length) throw new DnsMessageError("label runs past the end");
      wire += length + 1;
      if (wire > MAX_NAME_WIRE_BYTES) throw new DnsMessageError("name over 255 octets");
      let label = "";
      for (let i = 0; i < length; i += 1) label += String.fromCharCode(this.bytes[at + 1 + i] ?? 0);
      labels.push(label);
      at += 1 + length;
    }
    this.at = end ?? at;
    return labels.join(".");
  }
}

export interface DecodedQuestion extends DnsQuestion {
  class: number;
  /** The question's bytes as sent (name, type, class), for an exact echo. */
  raw: Uint8Array;
}

export interface DecodedRecord {
  name: string;
  type: number;
  ttl: number;
  /** TXT strings, when type is TXT. */
  txt?: Uint8Array[];
  rdata: Uint8Array;
}

export interface DecodedMessage {
  id: number;
  isResponse: boolean;
  opcode: number;
  isTruncated: boolean;
  recursionDesired: boolean;
  rcode: number;
  questions: DecodedQuestion[];
  answers: DecodedRecord[];
  authority: DecodedRecord[];
  /** The EDNS0 UDP payload size of an OPT record, if there was one. */
  ednsUdpBytes: number | undefined;
}

/** At most this many records of each section are decoded (a message can claim 65535). */
const MAX_RECORDS_PER_SECTION = 64;

export function decodeDnsMessage(bytes: Uint8Array): DecodedMessage {
  const reader = new Reader(bytes);
  const id = reader.u16();
  const flags = reader.u16();
  const qdCount = reader.u16();
  const anCount = reader.u16();
  const nsCount = reader.u16();
  const arCount = reader.u16();
  if (qdCount > 1) throw new DnsMessageError(`${qdCount} questions`);
  if (anCount > MAX_RECORDS_PER_SECTION || nsCount > MAX_RECORDS_PER_SECTION || arCount > MAX_RECORDS_PER_SECTION) {
    throw new DnsMessageError("too many records");
  }
  const questions: DecodedQuestion[] = [];
  for (let i = 0; i < qdCount; i += 1) {
    const start = reader.at;
    const name = reader.name();
    const type = reader.u16();
    const klass = reader.u16();
    questions.push({ name, type, class: klass, raw: bytes.slice(start, reader.at) });
  }
  const readRecords = (count: number): DecodedRecord[] => {
    const records: DecodedRecord[] = [];
    for (let i = 0; i < count; i += 1) {
      const name = reader.name();
      const type = reader.u16();
      reader.u16(); // class (OPT: UDP size, read below)
      const ttl = reader.u32();
      const rdLength = reader.u16();
      const rdataStart = reader.at;
      const rdata = reader.take(rdLength);
      const record: DecodedRecord = { name, type, ttl, rdata };
      if (type === DNS_TYPE_TXT) {
        const strings: Uint8Array[] = [];
        const txt = new Reader(bytes, rdataStart);
        while (txt.at < rdataStart + rdLength) {
          const length = txt.u8();
          if (txt.at + length > rdataStart + rdLength) throw new DnsMessageError("TXT string runs past its record");
          strings.push(txt.take(length));
        }
        record.txt = strings;
      }
      records.push(record);
    }
    return records;
  };
  const answers = readRecords(anCount);
  const authority = readRecords(nsCount);
  let ednsUdpBytes: number | undefined;
  for (let i = 0; i < arCount; i += 1) {
    const name = reader.name();
    const type = reader.u16();
    const klass = reader.u16();
    reader.u32();
    reader.take(reader.u16());
    if (type === DNS_TYPE_OPT && name === "") ednsUdpBytes = klass;
  }
  return {
    id,
    isResponse: (flags & 0x8000) !== 0,
    opcode: (flags >>> 11) & 0x0f,
    isTruncated: (flags & 0x0200) !== 0,
    recursionDesired: (flags & 0x0100) !== 0,
    rcode: flags & 0x0f,
    questions,
    answers,
    authority,
    ednsUdpBytes,
  };
}
