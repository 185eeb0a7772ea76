/**
 * The headless phone as a command, for demos and shell-driven tests:
 *   npx tsx test/support/phone-cli.ts --state DIR keygen --name "Test phone"
 *   npx tsx test/support/phone-cli.ts --state DIR approve 'QRA1:…'
 */
import { Command, InvalidArgumentError } from 'commander';
import { QrauthError, isQrauthError } from '../../protocol/src/index.js';
import { HeadlessPhone } from './phone.js';

const program = new Command()
  .name('phone-cli')
  .description('A headless qrauth phone: keys in a state directory, talks to the relay like the app.')
  .requiredOption('-s, --state <dir>', 'state directory (device.json, hosts.json)')
  .option(
    '--timeout <ms>',
    'how long to wait for the relay',
    (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected milliseconds');
      return n;
    },
    10_000,
  )
  .showHelpAfterError();

interface GlobalOptions {
  state: string;
  timeout: number;
}
const globals = () => program.opts<GlobalOptions>();

async function withPhone<T>(fn: (phone: HeadlessPhone) => Promise<T> | T): Promise<T> {
  const phone = await HeadlessPhone.load(globals().state, { timeoutMs: globals().timeout });
  try {
    return await fn(phone);
  } finally {
    await phone.close();
  }
}

program
  .command('keygen')
  .description('make a new device key in the state directory')
  .option('-n, --name <name>', 'device name shown to the host', 'Headless phone')
  .action(async (o: { name: string }) => {
    const phone = await HeadlessPhone.create(globals().state, o.name);
    console.log(`deviceId ${phone.deviceId}`);
    console.log(phone.devicesLine());
  });

program
  .command('trust-host')
  .description('trust a host without enrolling (tests and demos)')
  .requiredOption('--host-pub <b64url>', "the host's public key (base64url, 43 characters)")
  .requiredOption('--hostname <name>', "the host's name as shown on the phone")
  .requiredOption('--relay <url>', 'relay URL the host is connected to')
  .action((o: { hostPub: string; hostname: string; relay: string }) =>
    withPhone(async (phone) => {
      const hostId = await phone.trustHost({ hostPub: o.hostPub, hostname: o.hostname, relayUrl: o.relay });
      console.log(`trusted ${o.hostname} hostId ${hostId}`);
    }),
  );

program
  .command('devices-line')
  .description('print this device as a line for a devices file')
  .action(() => withPhone((phone) => console.log(phone.devicesLine())));

program
  .command('enroll')
  .description('enroll with the host of an enrollment QR (QRE1:…)')
  .argument('<qrtext>', 'the enrollment QR text')
  .action((qr: string) =>
    withPhone(async (phone) => {
      const r = await phone.enroll(qr);
      console.log(`fingerprint ${r.fingerprint}`);
      if (!r.ack.ok) throw new QrauthError(r.ack.code, r.ack.message);
      console.log(`enrolled with ${r.ack.hostname} (hostId ${r.hostId})`);
    }),
  );

for (const decision of ['approve', 'deny'] as const) {
  program
    .command(decision)
    .description(`${decision} the login of a QR (QRA1:…) after checking the host's signature`)
    .argument('<qrtext>', 'the login QR text')
    .action((qr: string) =>
      withPhone(async (phone) => {
        const ack = await phone.decide(qr, decision, (ctx) => {
          const verb = decision === 'approve' ? 'Approving' : 'Denying';
          console.log(`${verb} login as ${ctx.user} to ${ctx.hostname} from ${ctx.rhost || 'unknown address'} (${ctx.service})`);
        });
        if (!ack.ok) throw new QrauthError(ack.code, ack.message);
        console.log(ack.result);
      }),
    );
}

program
  .command('code')
  .description('print the offline code for a login QR (no network)')
  .argument('<qrtext>', 'the login QR text')
  .action((qr: string) => withPhone((phone) => console.log(phone.offlineCode(qr))));

program.parseAsync().catch((e: unknown) => {
  if (isQrauthError(e)) console.error(`phone-cli: ${e.code}: ${e.message}`);
  else console.error(`phone-cli: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
