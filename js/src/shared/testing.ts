// Test helpers (used by the *.test.ts files only, never bundled into a panel): a stand-in for
// an anywidget model with get / set / on / off and custom messages.
import type { DeltaMsg } from "./series";

type Handler = (...args: never[]) => void;

export class FakeModel<T extends object> {
  private state: Partial<T>;
  private handlers = new Map<string, Set<Handler>>();
  constructor(state: Partial<T>) {
    this.state = { ...state };
  }
  get<K extends keyof T>(key: K): T[K] {
    return this.state[key] as T[K];
  }
  /** Sets traits and fires their change events (after all are set, as one sync message does). */
  set(changes: Partial<T>): void {
    Object.assign(this.state, changes);
    for (const k of Object.keys(changes)) this.emit(`change:${k}`);
  }
  on(event: string, fn: Handler): void {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(fn);
  }
  off(event?: string | null, fn?: Handler | null): void {
    if (event && fn) this.handlers.get(event)?.delete(fn);
  }
  listeners(event: string): number {
    return this.handlers.get(event)?.size ?? 0;
  }
  send(msg: DeltaMsg, buffers: DataView[] = []): void {
    this.emit("msg:custom", msg, buffers);
  }
  private emit(event: string, ...args: unknown[]): void {
    for (const fn of this.handlers.get(event) ?? []) (fn as (...a: unknown[]) => void)(...args);
  }
}

/** A DataView over a copy of `bytes` at an odd offset (as message buffers may arrive). */
export function unalignedView(bytes: Uint8Array): DataView {
  const buf = new ArrayBuffer(bytes.byteLength + 3);
  new Uint8Array(buf, 3).set(bytes);
  return new DataView(buf, 3, bytes.byteLength);
}

export function f32View(values: number[]): DataView {
  return unalignedView(new Uint8Array(new Float32Array(values).buffer));
}

export function fromBase64(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, "base64"));
}

/** A minimal DOM element for rendering tests in node: text only through textContent (its
 * innerHTML / outerHTML / insertAdjacentHTML throw, so a panel that parses markup fails). */
export class FakeElement {
  tagName: string;
  children: FakeElement[] = [];
  parent: FakeElement | null = null;
  className = "";
  title = "";
  type = "";
  value = "";
  disabled = false;
  private text = "";
  attributes = new Map<string, string>();
  style: Record<string, string> = {};
  dataset: Record<string, string> = {};
  listeners = new Map<string, Array<(ev: unknown) => void>>();
  classList = {
    toggle: (c: string, on?: boolean) => {
      const set = new Set(this.className.split(" ").filter(Boolean));
      if (on ?? !set.has(c)) set.add(c);
      else set.delete(c);
      this.className = [...set].join(" ");
    },
    contains: (c: string) => this.className.split(" ").includes(c),
    add: (c: string) => this.classList.toggle(c, true),
    remove: (c: string) => this.classList.toggle(c, false),
  };
  offsetWidth = 100;
  offsetHeight = 20;
  clientWidth = 800;
  clientHeight = 600;
  constructor(tag: string) {
    this.tagName = tag.toUpperCase();
  }
  get textContent(): string {
    return this.tagName === "#TEXT" ? this.text : this.text + this.children.map((c) => c.textContent).join("");
  }
  set textContent(v: string) {
    this.children = [];
    this.text = String(v);
  }
  set innerHTML(_v: string) {
    throw new Error("innerHTML used: text must go through textContent");
  }
  set outerHTML(_v: string) {
    throw new Error("outerHTML used");
  }
  insertAdjacentHTML(): void {
    throw new Error("insertAdjacentHTML used");
  }
  append(...nodes: Array<FakeElement | string>): void {
    for (const n of nodes) this.appendChild(typeof n === "string" ? textNode(n) : n);
  }
  appendChild(n: FakeElement): FakeElement {
    n.parent = this;
    this.children.push(n);
    return n;
  }
  replaceChildren(...nodes: Array<FakeElement | string>): void {
    this.children = [];
    this.text = "";
    this.append(...nodes);
  }
  remove(): void {
    if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this);
  }
  setAttribute(k: string, v: string): void {
    this.attributes.set(k, String(v));
  }
  getAttribute(k: string): string | null {
    return this.attributes.get(k) ?? null;
  }
  addEventListener(ev: string, fn: (ev: unknown) => void): void {
    if (!this.listeners.has(ev)) this.listeners.set(ev, []);
    this.listeners.get(ev)!.push(fn);
  }
  removeEventListener(): void {}
  querySelector(): null {
    return null;
  }
  getBoundingClientRect() {
    return { left: 0, top: 0, right: this.clientWidth, bottom: this.clientHeight, width: this.clientWidth, height: this.clientHeight };
  }
  getContext(): null {
    return null;
  }
  /** Every element below (depth first), this one included. */
  all(): FakeElement[] {
    return [this, ...this.children.flatMap((c) => c.all())];
  }
  /** Elements whose class list holds `cls`. */
  byClass(cls: string): FakeElement[] {
    return this.all().filter((e) => e.className.split(" ").includes(cls));
  }
}

function textNode(s: string): FakeElement {
  const t = new FakeElement("#text");
  t.textContent = s;
  return t;
}

/** Installs a fake `document` (and window) on globalThis for the duration of `fn`. */
export function withFakeDom<R>(fn: () => R): R {
  const g = globalThis as Record<string, unknown>;
  const saved = { document: g.document, window: g.window };
  g.document = {
    createElement: (tag: string) => new FakeElement(tag),
    createElementNS: (_ns: string, tag: string) => new FakeElement(tag),
    createTextNode: (s: string) => textNode(s),
    createRange: () => ({ selectNodeContents() {} }),
    hidden: false,
  };
  g.window = { setTimeout: () => 0, clearTimeout: () => undefined, devicePixelRatio: 1, isSecureContext: false, getSelection: () => null };
  try {
    return fn();
  } finally {
    g.document = saved.document;
    g.window = saved.window;
  }
}
