import { describe, expect, it } from "vitest";
import { eventValueSpans, objectMembers, objectValueSpans } from "./json-spans.js";

/** The raw text of each element's `data` and `metadata`, as eventValueSpans finds them. */
function rawValues(body: string): Array<{ data?: string; metadata?: string }> {
  JSON.parse(body); // the scanner is only ever given valid JSON
  return eventValueSpans(body).map((s) => ({
    ...(s.data && { data: body.slice(s.data[0], s.data[1]) }),
    ...(s.metadata && { metadata: body.slice(s.metadata[0], s.metadata[1]) }),
  }));
}

/** A deterministic generator (xorshift32), so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let x = Math.imul(seed, 0x9e3779b1) >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
  for (let i = 0; i < 8; i++) next();
  return next;
}

/** Random JSON text with the number literals, escapes and whitespace JSON.parse would lose. */
function randomJson(r: () => number, depth: number): string {
  const ws = () => [" ", "", "\n", "\t", " \r\n "][Math.floor(r() * 5)]!;
  const pick = Math.floor(r() * (depth > 3 ? 5 : 7));
  switch (pick) {
    case 0:
      return ["1234567890123456789", "1.10", "-0", "1e400", "0.1e-7", "42"][Math.floor(r() * 6)]!;
    case 1:
      return ["true", "false", "null"][Math.floor(r() * 3)]!;
    case 2:
    case 3: {
      const parts = [
        "a",
        '\\"',
        "\\\\",
        "\\u00e9",
        "é",
        "}",
        "]",
        ",",
        ":",
        "{",
        "[",
        "\\n",
        "data",
      ];
      let s = '"';
      for (let i = Math.floor(r() * 6); i > 0; i--) s += parts[Math.floor(r() * parts.length)];
      return s + '"';
    }
    case 4:
      return '"x"';
    case 5: {
      const n = Math.floor(r() * 4);
      const items = Array.from({ length: n }, () => ws() + randomJson(r, depth + 1) + ws());
      return `[${items.join(",")}${n === 0 ? ws() : ""}]`;
    }
    default: {
      const keys = ["a", "data", "metadata", "d\\u0061ta", "x y", ""];
      const n = Math.floor(r() * 4);
      const items = Array.from(
        { length: n },
        () =>
          `${ws()}"${keys[Math.floor(r() * keys.length)]}"${ws()}:${ws()}${randomJson(r, depth + 1)}${ws()}`,
      );
      return `{${items.join(",")}${n === 0 ? ws() : ""}}`;
    }
  }
}

describe("eventValueSpans", () => {
  it("finds the text of data and metadata as it was sent, numbers and escapes untouched", () => {
    const body =
      '[ {"eventId":"e1","eventType":"T","data":{"orderId":1234567890123456789,"price":1.10},' +
      '"metadata" : [ 1e400 , "\\u00e9" ] } ,{"data":"}\\"]{","eventType":"U"}, {"eventType":"V"}]';
    expect(rawValues(body)).toEqual([
      { data: '{"orderId":1234567890123456789,"price":1.10}', metadata: '[ 1e400 , "\\u00e9" ]' },
      { data: '"}\\"]{"' },
      {},
    ]);
  });

  it("takes the last of repeated keys, as JSON.parse does, and reads escaped key names", () => {
    const body = '[{"data":1,"d\\u0061ta":2,"metadata":{"data":3},"data":{"x":[4]}}]';
    expect(rawValues(body)).toEqual([{ data: '{"x":[4]}', metadata: '{"data":3}' }]);
  });

  it("gives elements that are not objects no spans", () => {
    expect(rawValues('[1, "data", [{"data": 2}], null, {"data": 5}]')).toEqual([
      {},
      {},
      {},
      {},
      { data: "5" },
    ]);
    expect(rawValues("[]")).toEqual([]);
    expect(rawValues(" \n[ ] ")).toEqual([]);
  });

  it("over random bodies, each span is exactly the value text that was sent", () => {
    let events = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed);
      const sent: Array<{ data?: string; metadata?: string }> = [];
      const elements: string[] = [];
      for (let k = Math.floor(r() * 5); k > 0; k--) {
        const data = randomJson(r, 0);
        const metadata = r() < 0.5 ? randomJson(r, 0) : undefined;
        const noise = randomJson(r, 2);
        // Key names as a writer may spell them: escaped, or with escapes of their own.
        const dataKey = r() < 0.3 ? '"d\\u0061ta"' : '"data"';
        const metadataKey = r() < 0.3 ? '"\\u006detadata"' : '"metadata"';
        const fields = [`"event\\"Type" : ${noise}`, `${dataKey}:\n${data}`];
        if (metadata !== undefined) fields.push(`${metadataKey}:${metadata}`);
        if (r() < 0.5) fields.reverse();
        elements.push(` {${fields.join(" , ")}} `);
        sent.push({ data, ...(metadata !== undefined && { metadata }) });
      }
      const body = `[${elements.join(",")}]`;
      expect(rawValues(body), `seed ${seed}: ${body}`).toEqual(sent);
      events += sent.length;
    }
    expect(events).toBeGreaterThan(500);
  });

  it("throws, never loops, on a text JSON.parse would have refused", () => {
    for (const text of ['[{"data": "open', '[{"data": {"a": [1}', '[{"data" 1}]', '[{"data": 1']) {
      expect(() => eventValueSpans(text), text).toThrow(/valid JSON/);
    }
  });

  it("finds them in a single object too (a line of an export file)", () => {
    const line = '{"eventId":"e","data" : {"id":1234567890123456789},"metadata":"m\\"x"}';
    const spans = objectValueSpans(line);
    expect(line.slice(...spans.data!)).toBe('{"id":1234567890123456789}');
    expect(line.slice(...spans.metadata!)).toBe('"m\\"x"');
    expect(objectValueSpans("[1]")).toEqual({});
  });
});

describe("objectMembers", () => {
  it("lists every member in order with its value text as written, repeated keys each time", () => {
    const text = '{ "a" : 1.10 , "d\\u0061ta":{"x":[1234567890123456789]},"a":"}", "":null}';
    JSON.parse(text);
    expect(objectMembers(text).map((m) => [m.key, text.slice(m.value[0], m.value[1])])).toEqual([
      ["a", "1.10"],
      ["data", '{"x":[1234567890123456789]}'],
      ["a", '"}"'],
      ["", "null"],
    ]);
    expect(objectMembers("{}")).toEqual([]);
    expect(objectMembers("[1]")).toEqual([]);
  });

  it("over random objects, the members rebuild the object JSON.parse reads", () => {
    let objects = 0;
    for (let seed = 1; seed <= 600; seed++) {
      const text = randomJson(rng(seed), 0);
      if (!text.startsWith("{")) continue;
      objects++;
      const rebuilt = `{${objectMembers(text)
        .map((m) => `${JSON.stringify(m.key)}:${text.slice(m.value[0], m.value[1])}`)
        .join(",")}}`;
      expect(JSON.parse(rebuilt), `seed ${seed}: ${text}`).toEqual(JSON.parse(text));
    }
    expect(objects).toBeGreaterThan(50);
  });
});
