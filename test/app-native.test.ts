/**
 * The phone app as a native (Capacitor, Android and iOS) app, in real Chromium: the device seed lives in
 * the platform keystore through @aparajita/capacitor-secure-storage, never in IndexedDB or
 * localStorage, and a real login is approved with it (real relay → agent → sshd with pam_qrauth).
 *
 * No Android runtime runs here (no SDK; the Capacitor 8 CLI needs Node 22), so only the native
 * side of the bridge is simulated, the way a Capacitor 8 Android shell sets up its WebView:
 *
 * - `window.androidBridge` with `postMessage(json)` / `onmessage`, what MessageHandler.java gets
 *   from WebViewCompat.addWebMessageListener(webView, "androidBridge", …); a message goes to the
 *   fake native side in this process (a Playwright binding), whose answer comes back as a
 *   message event on `androidBridge.onmessage`, as JavaScriptReplyProxy.postMessage delivers it;
 * - at document start (WebViewCompat.addDocumentStartJavaScript → page.addInitScript), the
 *   script JSInjector.getScriptString() builds: the global `window.Capacitor`, WEBVIEW_SERVER_URL,
 *   the real native-bridge.js shipped in @capacitor/android, and the plugin JS with
 *   `Capacitor.PluginHeaders` generated as JSExport.getPluginJS() does, from the @PluginMethod
 *   methods of the plugin's own SecureStorage.java (and of Capacitor's Plugin.java), and of the
 *   barcode scanner plugin's OSBarcodePlugin.kt: the two plugins the app ships.
 *
 * So the app's @capacitor/core sees an Android platform, routes the plugin's internal* calls
 * through `Capacitor.nativePromise` exactly as on a phone, and the fake keystore below stands for
 * what SecureStorage.java keeps (its decrypted view: key → data), readable by the tests. It lives
 * in this process, like a real keystore outside the WebView: it survives a page reload, and it is
 * nowhere in the page's storage.
 *
 * The barcode scanner plugin's native side is not simulated: a call to it is recorded (so a test
 * can see that it was made) and answered as a person closing its view without a read. Codes go in
 * through the Scan page's paste field (the same path as a scan once the text is read), or, in the
 * scanner tests, through the app's own camera view in Chromium.
 *
 * The scanner tests also run the app in a simulated Capacitor 8 iOS shell, set up the way
 * CAPBridgeViewController sets up its WKWebView (JSExport.swift): the global `window.Capacitor`
 * and WEBVIEW_SERVER_URL, @capacitor/ios's own native-bridge.js, and the plugin JS and headers
 * from the `pluginMethods` of the plugins' Swift sources; `window.webkit.messageHandlers.bridge`
 * takes the bridge's messages (objects, as WKScriptMessage delivers them) to the same fake native
 * side, whose answers come back through `window.Capacitor.fromNative`, as
 * CapacitorBridge.swift's evaluateJavaScript delivers them. What a WKWebView does with
 * getUserMedia is Chromium's here: the test shows that the app takes the camera through the
 * WebView on iOS too, not that WebKit gives it (docs/app.md has why it does on iOS 15+).
 */
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { nodeCrypto } from '../protocol/src/crypto-node.js';
import { fromB64url, keyId, toB64url } from '../protocol/src/index.js';
import {
  type AppInChromium,
  approveAndFinishSsh,
  artifactPath,
  blankFrame,
  closeScannerIfOpen,
  createDevice,
  newAppContext,
  pasteIntoApp,
  putAppRecordScript,
  qrFramesInTheme,
  reportFailedPage,
  startAppInChromium,
  visibleIn,
  writeY4m,
} from './support/browser.js';
import { ENROLL_RE, enrollAppWithCli, qrauthCli } from './support/enroll.js';
import { nextMarker, runInPty } from './support/pty.js';
import { sshArgs } from './support/sshd.js';
import { ALICE, LOGIN_PAYLOAD_RE, type Stack, startStack } from './support/stack.js';
import { prng, testSeed } from './support/seeded.js';
import type { StaticServer } from './support/static-server.js';
import { ROOT, isRoot } from './support/system.js';

/** Made-up seeds, keys and login ids come from this seed (printed when a test fails). */
const SEED = testSeed(0x0a7e_5eed);
const seededBytes = prng(SEED);

// ---- the simulated native side of a Capacitor 8 Android shell (and, below it, an iOS one) ----

const CAPACITOR_ANDROID = join(ROOT, 'node_modules/@capacitor/android/capacitor/src/main');
const SECURE_STORAGE = join(ROOT, 'node_modules/@aparajita/capacitor-secure-storage');
const SECURE_STORAGE_JAVA = join(SECURE_STORAGE, 'android/src/main/java/com/aparajita/capacitor/securestorage/SecureStorage.java');
const BARCODE_SCANNER_KOTLIN = join(ROOT, 'node_modules/@capacitor/barcode-scanner/android/src/main/java/com/capacitorjs/barcodescanner/OSBarcodePlugin.kt');
const CAPACITOR_IOS = join(ROOT, 'node_modules/@capacitor/ios/Capacitor/Capacitor');
const SECURE_STORAGE_SWIFT = join(SECURE_STORAGE, 'ios/Sources/SecureStoragePlugin/Plugin.swift');
const BARCODE_SCANNER_SWIFT = join(ROOT, 'node_modules/@capacitor/barcode-scanner/ios/Sources/CapacitorBarcodeScannerPlugin/CapacitorBarcodeScannerPlugin.swift');
/** The app's key prefix for its keystore entries (platform.ts) and its seed entries' names (device-key.ts). */
const SEED_ENTRY = /^qrauth_device-seed-([A-Za-z0-9_-]{22})$/;
/** KeychainAccess.whenUnlockedThisDeviceOnly in the plugin's definitions (what the iOS side reads). */
const WHEN_UNLOCKED_THIS_DEVICE_ONLY = 1;

interface PluginMethodHeader {
  name: string;
  rtype?: 'promise' | 'callback';
}

/** The @PluginMethod methods of a plugin's Java or Kotlin source, as PluginHandle indexes them. */
function pluginMethods(source: string): PluginMethodHeader[] {
  const out: PluginMethodHeader[] = [];
  const re = /@PluginMethod(?:\(\s*returnType\s*=\s*PluginMethod\.RETURN_(\w+)\s*\))?\s+(?:@\w+\s+)*(?:public\s+void|fun)\s+(\w+)\s*\(/g;
  for (const m of source.matchAll(re)) {
    const rtype = (m[1] ?? 'PROMISE').toLowerCase();
    // JSExport.createPluginMethodHeader: no rtype for RETURN_NONE.
    out.push(rtype === 'none' ? { name: m[2]! } : { name: m[2]!, rtype: rtype as 'promise' | 'callback' });
  }
  return out;
}

/** The name a plugin's source registers under (@CapacitorPlugin(name = …)), what PluginHeaders lists. */
function pluginName(source: string): string {
  const m = /@CapacitorPlugin\(\s*name\s*=\s*"(\w+)"/.exec(source);
  if (!m) throw new Error('no @CapacitorPlugin(name = …) in the plugin source');
  return m[1]!;
}

/**
 * A plugin's jsName and methods from its Swift source (CAPBridgedPlugin's `pluginMethods`: `.init(#selector(m))`
 * or `CAPPluginMethod(name: "m", returnType: …)`, a promise unless it says otherwise), with the methods
 * JSExport.swift's createPluginHeader puts before them.
 */
function swiftPlugin(source: string): { id: string; methods: PluginMethodHeader[] } {
  const id = /\bjsName\s*=\s*"(\w+)"/.exec(source)?.[1];
  const list = /\bpluginMethods\s*:\s*\[CAPPluginMethod\]\s*=\s*\[([\s\S]*?)\]\n/.exec(source)?.[1];
  if (!id || !list) throw new Error('no jsName or pluginMethods in the plugin source');
  const methods: PluginMethodHeader[] = [
    { name: 'addListener' },
    { name: 'removeListener' },
    { name: 'removeAllListeners', rtype: 'promise' },
    { name: 'checkPermissions', rtype: 'promise' },
    { name: 'requestPermissions', rtype: 'promise' },
  ];
  const re = /(?:\.init|CAPPluginMethod)\(\s*(?:#selector\((\w+)\)|name:\s*"(\w+)")(?:\s*,\s*returnType:\s*(?:CAPPluginReturn|\.)(\w+))?\s*\)/g;
  for (const m of list.matchAll(re)) {
    const rtype = (m[3] ?? 'promise').toLowerCase();
    methods.push(rtype === 'none' ? { name: (m[1] ?? m[2])! } : { name: (m[1] ?? m[2])!, rtype: rtype as 'promise' | 'callback' });
  }
  if (methods.length === 5) throw new Error(`no methods found in the pluginMethods of ${id}`);
  return { id, methods };
}

/** JSExport.getPluginJS(): the per-plugin stubs and window.Capacitor.PluginHeaders. */
function pluginJs(plugins: Array<{ id: string; methods: PluginMethodHeader[] }>): string {
  const lines = ['// Begin: Capacitor Plugin JS'];
  for (const { id, methods } of plugins) {
    lines.push(
      `(function(w) {\nvar a = (w.Capacitor = w.Capacitor || {});\nvar p = (a.Plugins = a.Plugins || {});\nvar t = (p['${id}'] = {});\n` +
        `t.addListener = function(eventName, callback) {\n  return w.Capacitor.addListener('${id}', eventName, callback);\n}`,
    );
    for (const m of methods) {
      if (m.name === 'addListener' || m.name === 'removeListener') continue;
      if (m.rtype === 'promise') lines.push(`t['${m.name}'] = function(_options) {\nreturn w.Capacitor.nativePromise('${id}', '${m.name}', _options)\n}`);
      else if (m.rtype === 'callback') lines.push(`t['${m.name}'] = function(_options, _callback) {\nreturn w.Capacitor.nativeCallback('${id}', '${m.name}', _options, _callback)\n}`);
      else lines.push(`t['${m.name}'] = function(_options) {\nreturn w.Capacitor.nativeCallback('${id}', '${m.name}', _options)\n}`);
    }
    lines.push('})(window);\n');
  }
  return `${lines.join('\n')}\nwindow.Capacitor.PluginHeaders = ${JSON.stringify(plugins.map((p) => ({ name: p.id, methods: p.methods })))};`;
}

const NATIVE_BINDING = '__qrauthFakeNative';
/** The barcode scanner plugin's id, as its Android source registers it (the app's import names the same). */
const BARCODE_SCANNER = pluginName(readFileSync(BARCODE_SCANNER_KOTLIN, 'utf8'));

/** What the WebView injects before any page script: androidBridge, then JSInjector's script. */
function androidShellScript(serverUrl: string): string {
  const basePluginMethods = pluginMethods(readFileSync(join(CAPACITOR_ANDROID, 'java/com/getcapacitor/Plugin.java'), 'utf8'));
  const securePlugin = { id: 'SecureStorage', methods: [...pluginMethods(readFileSync(SECURE_STORAGE_JAVA, 'utf8')), ...basePluginMethods] };
  const scannerPlugin = { id: BARCODE_SCANNER, methods: [...pluginMethods(readFileSync(BARCODE_SCANNER_KOTLIN, 'utf8')), ...basePluginMethods] };
  const androidBridge = `(() => {
  const bridge = {
    onmessage: null,
    postMessage(message) {
      if (typeof message !== 'string') throw new TypeError('androidBridge.postMessage takes a string');
      window.${NATIVE_BINDING}(message).then((reply) => {
        if (reply !== null && typeof bridge.onmessage === 'function') bridge.onmessage(new MessageEvent('message', { data: reply }));
      });
    },
  };
  Object.defineProperty(window, 'androidBridge', { value: bridge, enumerable: true });
})();`;
  return [
    androidBridge,
    // JSExport.getGlobalJS (a release build: not debug, no bridge logging)
    'window.Capacitor = { DEBUG: false, isLoggingEnabled: false, Plugins: {} };',
    `window.WEBVIEW_SERVER_URL = ${JSON.stringify(serverUrl)};`,
    readFileSync(join(CAPACITOR_ANDROID, 'assets/native-bridge.js'), 'utf8'),
    // The app's own plugins; a real shell also lists Capacitor's (WebView, CapacitorHttp…). The scanner is
    // listed so that a call to it reaches the fake native side and is recorded: without its header,
    // @capacitor/core would throw "not implemented on android" in the page and no call would be seen.
    pluginJs([securePlugin, scannerPlugin]),
  ].join('\n\n');
}

/**
 * What CAPBridgeViewController puts in its WKWebView before any page script (JSExport.swift):
 * the `bridge` message handler, the global, @capacitor/ios's native-bridge.js, the plugins' JS.
 * `webViewCamera: false` is a WebView without getUserMedia (navigator.mediaDevices absent).
 */
function iosShellScript(serverUrl: string, webViewCamera: boolean): string {
  const messageHandler = `(() => {
  const bridge = {
    postMessage(message) {
      window.${NATIVE_BINDING}(JSON.stringify(message)).then((reply) => {
        if (reply !== null) window.Capacitor.fromNative(JSON.parse(reply));
      });
    },
  };
  Object.defineProperty(window, 'webkit', { value: { messageHandlers: { bridge } }, enumerable: true });
})();`;
  return [
    messageHandler,
    ...(webViewCamera ? [] : ['delete Navigator.prototype.mediaDevices;']),
    // exportCapacitorGlobalJS (a release build)
    `window.Capacitor = { DEBUG: false, isLoggingEnabled: false, Plugins: {} }; window.WEBVIEW_SERVER_URL = ${JSON.stringify(serverUrl)};`,
    readFileSync(join(CAPACITOR_IOS, 'assets/native-bridge.js'), 'utf8'),
    pluginJs([swiftPlugin(readFileSync(SECURE_STORAGE_SWIFT, 'utf8')), swiftPlugin(readFileSync(BARCODE_SCANNER_SWIFT, 'utf8'))]),
  ].join('\n\n');
}

interface NativeCall {
  pluginId: string;
  methodName: string;
  options: Record<string, unknown>;
}

/**
 * The native half: MessageHandler.postMessage → the SecureStorage plugin → sendResponseMessage.
 * `keystore` is SecureStorage.java's store as the plugin reads it back (prefixed key → data).
 * Every call is recorded, the barcode scanner's too (answered as a person closing its view).
 */
class FakeNative {
  readonly keystore = new Map<string, string>();
  readonly calls: NativeCall[] = [];
  /** Calls no native code answered (unknown method): they would hang on a phone. */
  readonly unanswered: string[] = [];
  /** Makes internalSetItem fail as the Keystore can (KeyStoreException osError). */
  failSets = false;
  /** Makes internalGetItem fail as a locked phone's keystore can (osError), for a while. */
  failGets = false;
  /** Holds internalSetItem until the test lets it go. */
  holdSets: Promise<void> | null = null;
  /** After this many reads of a seed entry, the entry is gone (read, then lost: a key vanishing mid-login). */
  loseSeedAfterReads: number | null = null;
  private readonly callWaiters: Array<{ methodName: string; resolve: (call: NativeCall) => void }> = [];

  /** Resolves at the next call of `methodName` (for a test that races it against what the page shows). */
  nextCall(methodName: string): Promise<NativeCall> {
    return new Promise((resolve) => this.callWaiters.push({ methodName, resolve }));
  }

  async receive(json: string): Promise<string | null> {
    const msg = JSON.parse(json) as { callbackId: string; pluginId: string; methodName: string; options?: Record<string, unknown>; type?: string };
    // Errors, Cordova and (iOS) the console the bridge copies to native: nothing for a plugin.
    if (msg.type === 'js.error' || msg.type === 'cordova' || msg.pluginId === 'Console') return null;
    const call: NativeCall = { pluginId: msg.pluginId, methodName: msg.methodName, options: msg.options ?? {} };
    this.calls.push(call);
    for (const w of this.callWaiters.filter((x) => x.methodName === call.methodName)) {
      this.callWaiters.splice(this.callWaiters.indexOf(w), 1);
      w.resolve(call);
    }
    const base = { save: false, callbackId: msg.callbackId, pluginId: msg.pluginId, methodName: msg.methodName };
    const reply = (r: { data?: unknown } | { error: { message: string; code?: string } }) =>
      msg.callbackId === '-1' ? null : JSON.stringify({ ...base, ...('error' in r ? { success: false, error: r.error } : { success: true, ...(r.data !== undefined ? { data: r.data } : {}) }) });
    if (msg.pluginId === BARCODE_SCANNER && msg.methodName === 'scanBarcode') {
      // The person closes the plugin's view without a read (ML Kit on Android reads no inverted QR):
      // the plugin's cancel error, as its iOS source words it (OSBarcodeError.swift; the Android
      // library that words it there is not in node_modules). The app takes /cancel/ as "closed".
      return reply({ error: { message: 'Couldn’t scan because the process was cancelled.', code: 'OS-PLUG-BARC-0006' } });
    }
    if (msg.pluginId !== 'SecureStorage') return reply({ error: { message: `unable to find plugin : ${msg.pluginId}` } });
    const o = call.options;
    const key = typeof o.prefixedKey === 'string' && o.prefixedKey !== '' ? o.prefixedKey : null;
    const prefix = typeof o.prefix === 'string' && o.prefix.trim() !== '' ? o.prefix : null;
    switch (msg.methodName) {
      case 'internalSetItem':
        if (!key) return reply({ error: { message: 'Missing or empty key param', code: 'missingKey' } });
        if (typeof o.data !== 'string') return reply({ error: { message: 'The data in the store is in an invalid format', code: 'invalidData' } });
        if (this.holdSets) await this.holdSets;
        if (this.failSets) return reply({ error: { message: 'An OS error occurred (ProviderException)', code: 'osError' } });
        this.keystore.set(key, o.data);
        return reply({});
      case 'internalGetItem': {
        if (!key) return reply({ error: { message: 'Missing or empty key param', code: 'missingKey' } });
        if (this.failGets) return reply({ error: { message: 'An OS error occurred (UserNotAuthenticatedException)', code: 'osError' } });
        const data = this.keystore.get(key) ?? null;
        if (data !== null && SEED_ENTRY.test(key) && this.loseSeedAfterReads !== null && --this.loseSeedAfterReads === 0) this.keystore.delete(key);
        return reply({ data: { data } });
      }
      case 'internalRemoveItem':
        if (!key) return reply({ error: { message: 'Missing or empty key param', code: 'missingKey' } });
        return reply({ data: { success: this.keystore.delete(key) } });
      case 'internalGetPrefixedKeys':
        if (!prefix) return reply({ error: { message: 'Missing or empty prefix param', code: 'missingPrefix' } });
        return reply({ data: { keys: [...this.keystore.keys()].filter((k) => k.startsWith(prefix)) } });
      case 'internalClearItemsWithPrefix':
        if (!prefix) return reply({ error: { message: 'Missing or empty prefix param', code: 'missingPrefix' } });
        for (const k of [...this.keystore.keys()]) if (k.startsWith(prefix)) this.keystore.delete(k);
        return reply({});
      default:
        // PluginHandle.invoke throws InvalidPluginMethodException: logged, never answered.
        this.unanswered.push(`${msg.pluginId}.${msg.methodName}`);
        return null;
    }
  }

  seedEntries(): Array<{ name: string; deviceId: string; data: string }> {
    return [...this.keystore].flatMap(([name, data]) => {
      const m = SEED_ENTRY.exec(name);
      return m ? [{ name, deviceId: m[1]!, data }] : [];
    });
  }
}

interface Shell {
  platform: 'android' | 'ios';
  /** The WebView gives the page a camera (getUserMedia); both real shells do (docs/app.md). */
  webViewCamera?: boolean;
}

/** A fresh phone (its own storage) running the app as a native app (Android unless told). */
async function newNativePhone(b: Browser, origin: string, shell: Shell = { platform: 'android' }): Promise<{ context: BrowserContext; page: Page; native: FakeNative; errors: string[] }> {
  const native = new FakeNative();
  const context = await newAppContext(b, origin);
  await context.exposeBinding(NATIVE_BINDING, (_source, json: string) => native.receive(json));
  const webViewCamera = shell.webViewCamera ?? true;
  const script = shell.platform === 'ios' ? iosShellScript(origin, webViewCamera) : androidShellScript(origin) + (webViewCamera ? '' : '\ndelete Navigator.prototype.mediaDevices;');
  await context.addInitScript({ content: script });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // On iOS the bridge asks native through prompt() whether CapacitorCookies and CapacitorHttp are
  // on; WebViewDelegationHandler answers from the app's config (neither is in ours: "false") and
  // shows no dialog. Any other dialog is the app's own, which it never opens: recorded as an error.
  if (shell.platform === 'ios') {
    page.on('dialog', (d) => {
      let type: unknown;
      try {
        type = (JSON.parse(d.message()) as { type?: unknown }).type;
      } catch {
        type = null;
      }
      if (d.type() === 'prompt' && (type === 'CapacitorCookies.isEnabled' || type === 'CapacitorHttp')) return void d.accept('false');
      errors.push(`unexpected ${d.type()} dialog: ${d.message()}`);
      void d.dismiss();
    });
  }
  return { context, page, native, errors };
}

// ---- what the page keeps: every IndexedDB value, localStorage and sessionStorage ----

interface StorageDump {
  idb: Array<{ db: string; store: string; key: string; value: unknown }>;
  local: Array<[string, string]>;
  session: Array<[string, string]>;
}

// Page-side code as a string: this file is type-checked without the DOM library. Binary values
// become {$binary: hex}, CryptoKeys {$cryptoKey: …}, so nothing is lost in JSON.
const DUMP_STORAGE = `(async () => {
  const asked = (req) => new Promise((resolve, reject) => { req.onsuccess = () => resolve(req.result); req.onerror = () => reject(req.error); });
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  const walk = (v) => {
    if (v instanceof ArrayBuffer) return { $binary: hex(new Uint8Array(v)) };
    if (ArrayBuffer.isView(v)) return { $binary: hex(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
    if (typeof CryptoKey !== 'undefined' && v instanceof CryptoKey) return { $cryptoKey: { type: v.type, extractable: v.extractable, algorithm: v.algorithm.name } };
    if (v instanceof Blob) return { $blob: v.size };
    if (v instanceof Date) return { $date: v.toISOString() };
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  const idb = [];
  for (const info of await indexedDB.databases()) {
    const db = await asked(indexedDB.open(info.name));
    for (const store of Array.from(db.objectStoreNames)) {
      const os = db.transaction(store, 'readonly').objectStore(store);
      const [keys, values] = await Promise.all([asked(os.getAllKeys()), asked(os.getAll())]);
      keys.forEach((key, i) => idb.push({ db: info.name, store, key: String(key), value: walk(values[i]) }));
    }
    db.close();
  }
  const entries = (s) => Array.from({ length: s.length }, (_, i) => [s.key(i), s.getItem(s.key(i))]);
  return JSON.stringify({ idb, local: entries(localStorage), session: entries(sessionStorage) });
})()`;

async function dumpStorage(p: Page): Promise<StorageDump> {
  return JSON.parse((await p.evaluate(DUMP_STORAGE)) as string) as StorageDump;
}

const putIndexedDb = putAppRecordScript;

// ---- the stack and the phone the serial tests share ----

let chromiumApp: AppInChromium;
let stack: Stack;
let app: StaticServer;
let browser: Browser;
let phone: Awaited<ReturnType<typeof newNativePhone>>;
let page: Page;
/** Filled by the first-start test. */
let device: { deviceId: string; publicKey: string; seedB64: string } | null = null;
let enrolled = false;

test.before(async () => {
  if (!isRoot()) throw new Error('end-to-end tests run as root (they start sshd and create users)');
  // The web build on an origin of its own, allow-listed by the relay (a real shell has https://localhost, always allowed).
  // Chromium's camera stays blank: these tests paste codes instead (but for the scanner tests).
  chromiumApp = await startAppInChromium();
  ({ app, browser } = chromiumApp);
  stack = await startStack({ agent: { expirySeconds: 60 }, relayOptions: { appOrigins: [app.origin] } });
  phone = await newNativePhone(browser, app.origin);
  page = phone.page;
});

test.afterEach.always(async (t) => {
  if (t.passed || !page) return;
  await reportFailedPage(t, page, 'failed-native-');
  t.log(`seed ${SEED} (QRAUTH_TEST_SEED replays it)`);
  t.log(`native calls: ${phone.native.calls.map((c) => c.methodName).join(', ')}`);
});

test.after.always(async () => {
  await chromiumApp?.close();
  await stack?.close();
});

function visible(testId: string, p: Page = page) {
  return visibleIn(p, testId);
}

/** An element of one page (pages still sliding out of view keep their elements for a moment). */
function onPage(pageId: string, testId: string) {
  return page.locator(`.ion-page:not(.ion-page-hidden)[data-testid="${pageId}"] [data-testid="${testId}"]`);
}

/** Types a QRA1/QRE1 code into the Scan page's paste field, as the scanner would hand it over. */
const pasteCode = (text: string, p: Page = page): Promise<void> => pasteIntoApp(p, text);

async function startSsh(marker: string) {
  const run = runInPty(sshArgs(stack.sshd.port, ALICE, `echo ${marker}`));
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  return { run, payload: payload! };
}

const marker = () => nextMarker('NATIVE_IN');
const nativeCallsOf = (name: string) => phone.native.calls.filter((c) => c.methodName === name);

/** Starts a real ssh login (killed at the end of the test) and pastes its code into the app. */
async function pasteSshLogin(t: ExecutionContext) {
  const m = marker();
  const { run, payload } = await startSsh(m);
  t.teardown(() => run.kill());
  await pasteCode(payload);
  return { m, run, payload };
}

/** An ssh login pasted into the app, and the key warning Approve shows instead of the login. */
async function loginShowingKeyWarning(t: ExecutionContext) {
  const login = await pasteSshLogin(t);
  const warning = onPage('page-approve', 'warning-error');
  await warning.waitFor();
  const text = (await warning.textContent()) ?? '';
  t.regex(text, /This phone's device key cannot be used/);
  return { ...login, text };
}

test.serial('first start as a native app: the seed goes to the keystore plugin, IndexedDB and localStorage hold none of it', async (t) => {
  // A leftover of an earlier install (iOS keeps Keychain items when an app is deleted), and an
  // entry of some other plugin that the app must not touch.
  phone.native.keystore.set(`qrauth_device-seed-${toB64url(seededBytes(16))}`, JSON.stringify(toB64url(seededBytes(32))));
  phone.native.keystore.set('capacitor-storage_other', '"someone else\'s"');

  await page.goto(`${app.origin}/`);
  t.is(await page.evaluate('window.Capacitor.getPlatform()'), 'android', "the app's @capacitor/core sees an Android shell");
  await page.getByTestId('page-welcome').waitFor();
  await createDevice(page, 'Alice native');

  await page.getByTestId('tab-settings').click();
  const deviceId = ((await visible('device-id').textContent()) ?? '').trim();
  const publicKey = ((await visible('device-public-key').textContent()) ?? '').trim();
  t.regex(deviceId, /^[A-Za-z0-9_-]{22}$/);

  // The keystore: one seed, under this device's name; its Ed25519 public key is the one the app shows.
  const seeds = phone.native.seedEntries();
  t.is(seeds.length, 1, `keystore entries: ${[...phone.native.keystore.keys()].join(', ')}`);
  const entry = seeds[0]!;
  t.is(entry.deviceId, deviceId);
  const seedB64 = JSON.parse(entry.data) as string; // the plugin stores JSON text
  const seed = fromB64url(seedB64, 32);
  const pub = nodeCrypto.ed25519FromSeed(seed).publicKey;
  t.is(toB64url(pub), publicKey, "the keystore's seed is the key of the public key the app shows");
  t.is(keyId(nodeCrypto, pub), deviceId);
  t.is(phone.native.keystore.get('capacitor-storage_other'), '"someone else\'s"', "another plugin's entry is untouched");
  // Stored with the strictest access that works for a foreground app, and never synced (iOS reads these).
  const sets = nativeCallsOf('internalSetItem');
  t.is(sets.length, 1);
  t.is(sets[0]!.options.access, WHEN_UNLOCKED_THIS_DEVICE_ONLY);
  t.is(sets[0]!.options.sync, false);
  t.deepEqual(phone.native.unanswered, []);

  // The page's own storage: the device's public part only; not one binary value, no key object,
  // and the seed in no encoding anywhere.
  const dump = await dumpStorage(page);
  const record = dump.idb.find((r) => r.db === 'qrauth' && r.key === 'device');
  t.truthy(record, JSON.stringify(dump.idb.map((r) => r.key)));
  t.deepEqual(Object.keys(record!.value as object).sort(), ['createdAt', 'deviceId', 'name', 'publicKey', 'store', 'v']);
  t.like(record!.value, { v: 2, store: 'keystore', publicKey, deviceId, name: 'Alice native' });
  const all = JSON.stringify(dump);
  t.false(all.includes('$binary'), 'no binary value in IndexedDB (no seed, no sealed blob, no IV)');
  t.false(all.includes('$cryptoKey'), 'no wrapping key in IndexedDB');
  for (const form of [seedB64, Buffer.from(seed).toString('hex'), Buffer.from(seed).toString('base64').replace(/=+$/, '')]) {
    t.false(all.includes(form), 'the seed appears nowhere in IndexedDB, localStorage or sessionStorage');
  }
  t.deepEqual(dump.local.filter(([k]) => /^(capacitor-storage_|qrauth_)/.test(k)), [], "the plugin's web fallback (localStorage) was never used");
  device = { deviceId, publicKey, seedB64 };
  await page.screenshot({ path: artifactPath('native-settings-360.png') });
});

test.serial('after a reload the native app loads the same device and makes no new key', async (t) => {
  if (!device) return t.fail('needs the first-start test');
  const setsBefore = nativeCallsOf('internalSetItem').length;
  await page.goto(`${app.origin}/`); // the app starts again
  await page.getByTestId('page-scan').waitFor();
  t.is(await page.getByTestId('page-welcome').count(), 0, 'no first-start screen');
  await page.getByTestId('tab-settings').click();
  t.is(((await visible('device-id').textContent()) ?? '').trim(), device.deviceId);
  t.is(((await visible('device-public-key').textContent()) ?? '').trim(), device.publicKey);
  t.is(nativeCallsOf('internalSetItem').length, setsBefore, 'nothing written to the keystore');
  t.deepEqual(phone.native.seedEntries().map((e) => e.deviceId), [device.deviceId]);
});

test.serial('enroll with `qrauth enroll`, then approve a real ssh login: signed with the seed from the keystore, accepted by the agent', async (t) => {
  if (!device) return t.fail('needs the first-start test');
  await enrollAppWithCli(t, page, stack.agent, ALICE, device.publicKey, 'Alice native');
  enrolled = true;

  const reads = nativeCallsOf('internalGetItem').length;
  const { m, run } = await pasteSshLogin(t);
  await visible('login-context').waitFor();
  t.is(await visible('ctx-user').textContent(), ALICE);
  t.is(await visible('ctx-host').textContent(), 'test-host');
  t.is(await visible('offline-code').count(), 0, 'no offline code before the decision (issue #17)');
  await approveAndFinishSsh(t, page, run, m);
  await page.screenshot({ path: artifactPath('native-approved-360.png') });
  t.true(
    stack.agent.logs.some((l) => /event=login .*how=phone result=approved/.test(l) && l.includes(`device=${device!.deviceId}`)),
    'the agent accepted a decision signed by this device',
  );
  t.true(nativeCallsOf('internalGetItem').length > reads, 'the seed was read from the keystore');
  t.deepEqual(phone.native.unanswered, []);
});

/**
 * A real ssh login's QR as a light terminal shows it (dark blocks on light: inverted) in front of
 * the camera; Scan on phone `p` (enrolled for the test host) opens the app's own camera view, never
 * the scanner plugin, which reads the code into Approve, and the login is approved.
 */
async function scanLightTerminalLogin(t: ExecutionContext, p: { page: Page; native: FakeNative }): Promise<void> {
  const m = marker();
  const { run } = await startSsh(m);
  t.teardown(() => run.kill());
  writeY4m(chromiumApp.camFile, qrFramesInTheme(run.output, 'light'));
  t.teardown(() => writeY4m(chromiumApp.camFile, blankFrame()));
  await closeScannerIfOpen(p.page);
  t.true(await p.page.evaluate(`window.Capacitor.isPluginAvailable(${JSON.stringify(BARCODE_SCANNER)})`), 'the shell has the scanner plugin: a call to it would reach the fake native side and be recorded');
  const pluginCalls = nativeCallsOfPhone(p.native, 'scanBarcode');
  const pluginCalled = p.native.nextCall('scanBarcode');
  await p.page.getByTestId('tab-scan').click();
  await visible('scan-camera', p.page).click();
  // Whichever the app opens first: its own camera view, or the plugin's.
  await Promise.race([p.page.getByRole('dialog', { name: 'Scan the QR code' }).waitFor(), pluginCalled]);
  t.is(nativeCallsOfPhone(p.native, 'scanBarcode'), pluginCalls, 'the scanner plugin was not called');
  await visible('login-context', p.page).waitFor({ timeout: 30_000 });
  t.is(await visible('ctx-user', p.page).textContent(), ALICE);
  t.is(nativeCallsOfPhone(p.native, 'scanBarcode'), pluginCalls, 'nor while its own view read the code');
  await approveAndFinishSsh(t, p.page, run, m);
}

test.serial('on Android the Scan button opens the app\'s own camera view, not the plugin (which reads no light-terminal QR there), and it reads an inverted QR into Approve', async (t) => {
  if (!device || !enrolled) return t.fail('needs the enrollment test');
  await scanLightTerminalLogin(t, phone);
});

test.serial('a keystore read that fails for now (a locked phone): "unlock and try again", no offer to replace the key, and it works once reads do', async (t) => {
  if (!device || !enrolled) return t.fail('needs the enrollment test');
  const entries = phone.native.seedEntries();
  t.is(entries.length, 1);
  const before = structuredClone(stack.relay!.metrics.forwarded);
  phone.native.failGets = true;
  t.teardown(() => (phone.native.failGets = false));
  const { m, run, payload, text } = await loginShowingKeyWarning(t);
  t.regex(text, /unlock the phone and try again/);
  t.is(await onPage('page-approve', 'replace-key').count(), 0, 'no offer to throw away a key that works after unlocking');
  t.is(await visible('approve').count(), 0);
  t.deepEqual(stack.relay!.metrics.forwarded, before, 'nothing was sent');
  t.deepEqual(phone.native.seedEntries(), entries, 'the key is untouched');

  // Unlocked: the same login scanned again is shown and approved with the same key.
  phone.native.failGets = false;
  await pasteCode(payload);
  await visible('login-context').waitFor();
  await approveAndFinishSsh(t, page, run, m);
  t.deepEqual(phone.errors, []);
});

test.serial('the keystore entry is gone (an app restored from a backup): the app says so, sends nothing, approves nothing, does not crash', async (t) => {
  if (!device || !enrolled) return t.fail('needs the enrollment test');
  for (const e of phone.native.seedEntries()) phone.native.keystore.delete(e.name);
  // The app starts again as after a restore: IndexedDB came back, the keystore entry did not.
  await page.goto(`${app.origin}/`);
  await page.getByTestId('page-scan').waitFor();
  const before = structuredClone(stack.relay!.metrics.forwarded);
  const approvedBefore = stack.agent.logs.filter((l) => /event=login .*result=approved/.test(l)).length;

  const { m, run, text } = await loginShowingKeyWarning(t);
  t.regex(text, /the device key is missing from this phone's keystore \(was the app's data restored from a backup\?\)/);
  t.regex(text, /enroll this phone again/);
  t.regex(text, /Nothing was sent/);
  t.is(await visible('login-context').count(), 0);
  t.is(await visible('approve').count(), 0);
  t.is(await visible('deny').count(), 0);
  t.is(await visible('offline-code-box').count(), 0, 'no code without the key');
  await page.screenshot({ path: artifactPath('native-key-missing-360.png') });

  // Enrolling cannot work either, and says why rather than "not a valid code".
  const cli = qrauthCli(stack.agent.configPath, ['enroll', '--user', ALICE]);
  t.teardown(() => cli.kill());
  const [enrollPayload] = await cli.waitFor(ENROLL_RE);
  await pasteCode(enrollPayload!);
  await visible('page-enroll').waitFor();
  const enrollWarning = onPage('page-enroll', 'warning-error');
  await enrollWarning.waitFor();
  t.regex((await enrollWarning.textContent()) ?? '', /This phone's device key cannot be used.*missing from this phone's keystore/s);
  t.is(await visible('enroll-send').count(), 0);

  run.type('\r'); // the login waits for a verdict that never comes; nothing may approve it meanwhile
  await page.waitForTimeout(1000);
  t.false(run.output.includes(m), 'the login did not go through');
  t.deepEqual(stack.relay!.metrics.forwarded, before, 'the relay forwarded nothing');
  t.is(stack.agent.logs.filter((l) => /event=login .*result=approved/.test(l)).length, approvedBefore);
  // The app keeps working and made no key behind the person's back.
  await page.getByTestId('tab-settings').click();
  t.is(((await visible('device-id').textContent()) ?? '').trim(), device.deviceId);
  t.deepEqual(phone.native.seedEntries(), []);
  t.deepEqual(phone.errors, [], 'no uncaught errors in the page');
  t.deepEqual(phone.native.unanswered, []);
});

// ---- making a new device key when the old one cannot be used ----

/** The app's own IndexedDB records (device, hosts, history, settings), as values comparable in the test. */
async function appRecords(p: Page = page): Promise<Record<string, unknown>> {
  return Object.fromEntries((await dumpStorage(p)).idb.filter((r) => r.db === 'qrauth').map((r) => [r.key, r.value]));
}

/** A login code of the enrolled test host for a session that does not exist: enough to open Approve. */
function loginCodeOfTestHost(): string {
  return `QRA1:${stack.agent.agent.host.hostId}:${toB64url(seededBytes(16))}:${toB64url(seededBytes(16))}`;
}

/** Filled by the reset test: the key first start made after the old one was deleted. */
let newDevice: { deviceId: string; publicKey: string } | null = null;

test.serial('the key cannot be used: the screen offers "Make a new device key"; cancelling its confirmation changes nothing', async (t) => {
  if (!device || !enrolled) return t.fail('needs the enrollment test');
  t.deepEqual(phone.native.seedEntries(), [], 'as the previous test left it: the record is there, its keystore entry is not');
  await page.goto(`${app.origin}/`);
  await page.getByTestId('page-scan').waitFor();
  const storeBefore = await appRecords();
  t.like(storeBefore.device, { deviceId: device.deviceId });
  t.is((storeBefore.hosts as unknown[]).length, 1);
  const keystoreBefore = [...phone.native.keystore];

  await pasteCode(loginCodeOfTestHost());
  await onPage('page-approve', 'warning-error').waitFor();
  const replace = onPage('page-approve', 'replace-key');
  t.is(((await replace.textContent()) ?? '').trim(), 'Make a new device key');
  await replace.click();
  const alert = page.getByTestId('replace-key-alert');
  await alert.waitFor();
  const text = await alert.innerText();
  t.regex(text, /Make a new device key\?/);
  t.regex(text, /current key is deleted and stops working/);
  t.regex(text, /Every host must enroll this phone again: run qrauth enroll there/);
  t.regex(text, /list of enrolled hosts on this phone is cleared; History is kept/);
  await page.screenshot({ path: artifactPath('native-replace-key-confirm-360.png') });
  await page.getByTestId('replace-key-cancel').click();
  await alert.waitFor({ state: 'detached' });

  t.deepEqual(await appRecords(), storeBefore, 'device record, hosts and history as they were');
  t.deepEqual([...phone.native.keystore], keystoreBefore, 'the keystore as it was');
  t.true(await onPage('page-approve', 'warning-error').isVisible(), 'still on the warning');
  t.is(await page.getByTestId('page-welcome').count(), 0);
  t.deepEqual(phone.errors, []);
});

test.serial('"Make a new device key", confirmed: the old record, keystore entry and hosts are gone, History stays; first start puts a new seed in the keystore', async (t) => {
  if (!device || !enrolled) return t.fail('needs the enrollment test');
  // The mismatched case: an entry under this device's name that is not its key (so there is an
  // entry for the reset to remove; the missing case is the test before).
  const oldEntry = `qrauth_device-seed-${device.deviceId}`;
  phone.native.keystore.set(oldEntry, JSON.stringify(toB64url(seededBytes(32))));
  await page.goto(`${app.origin}/`);
  await page.getByTestId('page-scan').waitFor();
  const storeBefore = await appRecords();
  t.true(Array.isArray(storeBefore.history) && storeBefore.history.length > 0, 'the approval of the enrollment test is in History');
  const otherBefore = phone.native.keystore.get('capacitor-storage_other');
  t.truthy(otherBefore);

  await pasteCode(loginCodeOfTestHost());
  const warning = onPage('page-approve', 'warning-error');
  await warning.waitFor();
  t.regex((await warning.textContent()) ?? '', /does not match this phone's public key — make a new device key and enroll this phone again/);
  await onPage('page-approve', 'replace-key').click();
  await page.getByTestId('replace-key-confirm').click();
  await page.getByTestId('page-welcome').waitFor();

  const storeAfter = await appRecords();
  t.false('device' in storeAfter, 'the old device record is gone');
  t.deepEqual(storeAfter.hosts, [], 'no hosts: they trusted the old key only');
  t.deepEqual(storeAfter.history, storeBefore.history, 'History is kept');
  t.false(phone.native.keystore.has(oldEntry), "the old key's keystore entry is gone");
  t.deepEqual(phone.native.seedEntries(), []);
  t.is(phone.native.keystore.get('capacitor-storage_other'), otherBefore, "another plugin's entry is untouched");
  await page.screenshot({ path: artifactPath('native-after-reset-360.png') });

  // First start again: name the phone, make the new key.
  await createDevice(page, 'Alice native 2');
  t.is(new URL(page.url()).pathname, '/scan');
  const seeds = phone.native.seedEntries();
  t.is(seeds.length, 1, `keystore entries: ${[...phone.native.keystore.keys()].join(', ')}`);
  const pub = nodeCrypto.ed25519FromSeed(fromB64url(JSON.parse(seeds[0]!.data) as string, 32)).publicKey;
  const deviceId = keyId(nodeCrypto, pub);
  t.is(seeds[0]!.deviceId, deviceId);
  t.not(deviceId, device.deviceId, 'a new key, not the old one');
  t.like((await appRecords()).device, { v: 2, store: 'keystore', deviceId, publicKey: toB64url(pub), name: 'Alice native 2' });
  await page.getByTestId('tab-settings').click();
  t.is(((await visible('device-id').textContent()) ?? '').trim(), deviceId);
  await page.getByTestId('tab-hosts').click();
  await visible('no-hosts').waitFor();
  await page.getByTestId('tab-history').click();
  await visible('history-item').first().waitFor();
  t.is(await visible('history-item').count(), (storeBefore.history as unknown[]).length, 'History shows the old decisions');
  newDevice = { deviceId, publicKey: toB64url(pub) };
  t.deepEqual(phone.errors, []);
  t.deepEqual(phone.native.unanswered, []);
});

test.serial('the new key enrolls with `qrauth enroll` and approves a real ssh login, which the agent accepts; cancelling Settings → Replace keeps it', async (t) => {
  if (!newDevice) return t.fail('needs the reset test');
  await enrollAppWithCli(t, page, stack.agent, ALICE, newDevice.publicKey, 'Alice native 2');

  const { m, run } = await pasteSshLogin(t);
  await visible('login-context').waitFor();
  t.is(await visible('ctx-user').textContent(), ALICE);
  await approveAndFinishSsh(t, page, run, m);
  t.true(
    stack.agent.logs.some((l) => /event=login .*how=phone result=approved/.test(l) && l.includes(`device=${newDevice!.deviceId}`)),
    'the agent accepted a decision signed by the new key',
  );

  // Settings offers the same action for a key that works; cancelling it keeps everything.
  const storeBefore = await appRecords();
  const keystoreBefore = [...phone.native.keystore];
  await page.getByTestId('tab-settings').click();
  const replace = onPage('page-settings', 'replace-key');
  t.is(((await replace.textContent()) ?? '').trim(), "Replace this phone's key…");
  t.is(await replace.getAttribute('color'), 'danger');
  await replace.click();
  await page.getByTestId('replace-key-alert').waitFor();
  await page.getByTestId('replace-key-cancel').click();
  await page.getByTestId('replace-key-alert').waitFor({ state: 'detached' });
  t.deepEqual(await appRecords(), storeBefore, 'device record, hosts and history as they were');
  t.deepEqual([...phone.native.keystore], keystoreBefore, 'the keystore as it was');
  t.is(((await visible('device-id').textContent()) ?? '').trim(), newDevice.deviceId);
  t.deepEqual(phone.errors, []);
  t.deepEqual(phone.native.unanswered, []);
});

test.serial('attack: the code was shown, the person tapped Deny and the key failed while signing it: the code does not come back', async (t) => {
  if (!newDevice) return t.fail('needs the reset test');
  const seedBackup = phone.native.seedEntries().map((e) => [e.name, e.data] as const);
  t.teardown(() => {
    for (const [name, data] of seedBackup) phone.native.keystore.set(name, data);
  });
  await pasteSshLogin(t);
  await visible('login-context').waitFor();
  await visible('show-code').click();
  await visible('offline-code-box').waitFor();
  // The key goes between showing the code and signing the Deny (the signature reads the seed again).
  for (const [name] of seedBackup) phone.native.keystore.delete(name);
  await visible('deny').click();
  const warning = onPage('page-approve', 'warning-error');
  await warning.waitFor();
  t.regex((await warning.textContent()) ?? '', /This phone's device key cannot be used/);
  await page.waitForTimeout(300); // let the page settle into its final state
  t.is(await visible('offline-code-box').count(), 0, 'the person said no: no code to finish the login with');
  t.deepEqual(phone.errors, []);
});

test.serial('the key is lost between the offline code and the relay handshake: the screen names the key problem, not the relay, and no handshake is sent', async (t) => {
  const p = await newNativePhone(browser, app.origin);
  t.teardown(() => p.context.close());
  await p.page.goto(`${app.origin}/`);
  await p.page.getByTestId('create-device').click();
  await p.page.getByTestId('page-scan').waitFor();
  // Trusts the real host through the real relay (as an enrollment leaves it).
  const host = stack.agent.agent.host;
  await p.page.evaluate(putIndexedDb('hosts', [{ hostId: host.hostId, hostPub: toB64url(host.publicKey), hostname: 'test-host', relayUrl: stack.relay!.url, enrolledAt: Date.now() }]));
  // The offline code reads the seed; the entry is gone when the handshake reads it.
  p.native.loseSeedAfterReads = 1;
  const before = structuredClone(stack.relay!.metrics);

  await pasteCode(loginCodeOfTestHost(), p.page);
  const warning = p.page.locator('.ion-page:not(.ion-page-hidden)[data-testid="page-approve"] [data-testid="warning-error"]');
  await warning.waitFor();
  const text = (await warning.textContent()) ?? '';
  t.regex(text, /This phone's device key cannot be used/);
  t.regex(text, /the device key is missing from this phone's keystore/);
  t.regex(text, /Nothing was sent/);
  t.notRegex(text, /relay refused|host refused/i);
  t.is(await visible('replace-key', p.page).count(), 1, 'offers a new key');
  t.is(await visible('approve', p.page).count(), 0);
  t.is(await visible('offline-code-box', p.page).count(), 0);
  t.is(nativeCallsOfPhone(p.native, 'internalGetItem'), 2, 'the second read of the seed was the handshake (the path under test)');
  await p.page.waitForTimeout(300); // give a stray handshake time to arrive
  const after = stack.relay!.metrics;
  t.is(after.rejects.unauthenticated ?? 0, before.rejects.unauthenticated ?? 0, 'the relay refused no handshake: none was sent');
  t.deepEqual(after.forwarded, before.forwarded, 'the relay forwarded nothing');
  t.deepEqual(p.errors, []);
});

test.serial('a keystore write that fails leaves nothing behind, and the next try works', async (t) => {
  const p = await newNativePhone(browser, app.origin);
  t.teardown(() => p.context.close());
  p.native.failSets = true;
  await p.page.goto(`${app.origin}/`);
  await p.page.getByTestId('create-device').click();
  const warning = p.page.getByTestId('warning-error');
  await warning.waitFor();
  t.regex((await warning.textContent()) ?? '', /Cannot make the key.*could not be saved.*keystore/s);
  t.deepEqual([...p.native.keystore.keys()], []);
  t.true(nativeCallsOfPhone(p.native, 'internalRemoveItem') >= 1, 'the failed entry was removed');
  t.is((await dumpStorage(p.page)).idb.find((r) => r.key === 'device'), undefined, 'no device record');

  p.native.failSets = false;
  await p.page.getByTestId('create-device').click();
  await p.page.getByTestId('page-scan').waitFor();
  t.is(p.native.seedEntries().length, 1);
  t.deepEqual(p.errors, []);
});

test.serial('another start made the key while the seed was being stored: the seed is removed again, the other key stays', async (t) => {
  const p = await newNativePhone(browser, app.origin);
  t.teardown(() => p.context.close());
  let release!: () => void;
  p.native.holdSets = new Promise<void>((r) => (release = r));
  await p.page.goto(`${app.origin}/`);
  await p.page.getByTestId('create-device').click();
  await t.notThrowsAsync(waitUntil(() => nativeCallsOfPhone(p.native, 'internalSetItem') === 1));
  // Meanwhile (another window of the app, say) a device record appears in IndexedDB.
  const winner = nodeCrypto.ed25519FromSeed(seededBytes(32)).publicKey;
  const winnerRecord = { v: 2, store: 'keystore', publicKey: toB64url(winner), deviceId: keyId(nodeCrypto, winner), name: 'Other start', createdAt: Date.now() };
  p.native.keystore.set(`qrauth_device-seed-${winnerRecord.deviceId}`, JSON.stringify('winner-seed-stand-in'));
  await p.page.evaluate(putIndexedDb('device', winnerRecord));
  release();
  const warning = p.page.getByTestId('warning-error');
  await warning.waitFor();
  t.regex((await warning.textContent()) ?? '', /this phone already has a device key/);
  t.deepEqual(p.native.seedEntries().map((e) => e.deviceId), [winnerRecord.deviceId], "only the other start's entry remains");
  t.like((await dumpStorage(p.page)).idb.find((r) => r.key === 'device')?.value, { deviceId: winnerRecord.deviceId });
  t.deepEqual(p.errors, []);
});

function nativeCallsOfPhone(native: FakeNative, name: string): number {
  return native.calls.filter((c) => c.methodName === name).length;
}

async function waitUntil(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---- the iOS shell: the same camera view, and the plugin only where a WebView has no camera ----

test.serial('on iOS too the Scan button opens the app\'s own camera view, not the plugin, and a light-terminal QR it reads is approved with the iOS keystore\'s key', async (t) => {
  const p = await newNativePhone(browser, app.origin, { platform: 'ios' });
  t.teardown(() => p.context.close());
  await p.page.goto(`${app.origin}/`);
  t.is(await p.page.evaluate('window.Capacitor.getPlatform()'), 'ios', "the app's @capacitor/core sees an iOS shell");
  await p.page.getByTestId('page-welcome').waitFor();
  await createDevice(p.page, 'Alice iPhone');
  await p.page.getByTestId('tab-settings').click();
  const publicKey = ((await visible('device-public-key', p.page).textContent()) ?? '').trim();
  t.is(p.native.seedEntries().length, 1, 'the seed went to the keystore through the iOS bridge');
  await enrollAppWithCli(t, p.page, stack.agent, ALICE, publicKey, 'Alice iPhone');

  await scanLightTerminalLogin(t, p);
  t.true(
    stack.agent.logs.some((l) => /event=login .*how=phone result=approved/.test(l) && l.includes(`device=${keyId(nodeCrypto, fromB64url(publicKey, 32))}`)),
    'the agent accepted a decision signed by the iOS phone',
  );
  t.deepEqual(p.native.unanswered, []);
  t.deepEqual(p.errors, []);
});

test.serial('a native shell whose WebView has no camera (no getUserMedia) opens the scanner plugin instead, on Android and on iOS', async (t) => {
  for (const platform of ['android', 'ios'] as const) {
    const p = await newNativePhone(browser, app.origin, { platform, webViewCamera: false });
    t.teardown(() => p.context.close());
    await p.page.goto(`${app.origin}/`);
    t.is(await p.page.evaluate('window.Capacitor.getPlatform()'), platform);
    t.is(await p.page.evaluate('typeof navigator.mediaDevices'), 'undefined', 'the WebView has no camera');
    await p.page.getByTestId('create-device').click();
    await p.page.getByTestId('page-scan').waitFor();
    const pluginCalled = p.native.nextCall('scanBarcode');
    await visible('scan-camera', p.page).click();
    const call = await Promise.race([pluginCalled, p.page.waitForTimeout(10_000).then(() => null)]);
    if (!call) return t.fail(`${platform}: the scanner plugin was not called within 10 s`);
    t.is(call.pluginId, BARCODE_SCANNER, platform);
    t.is(await p.page.getByRole('dialog', { name: 'Scan the QR code' }).count(), 0, `${platform}: the app's own view did not open`);
    // The fake plugin answers as a person closing its view: no error, the Scan page is usable again.
    await t.notThrowsAsync(visible('scan-camera', p.page).waitFor(), platform);
    t.is(await p.page.getByTestId('warning-error').count(), 0, `${platform}: a closed scanner is not an error`);
    t.deepEqual(p.errors, [], platform);
  }
});
