#!/usr/bin/env python3
"""Write the small seed corpora for the fuzzers (run from pam_qrauth/: python3 fuzz/make_seeds.py)."""
import os
import struct


def field(tag, value):
    if isinstance(value, str):
        value = value.encode()
    return bytes([tag]) + struct.pack('>H', len(value)) + value


def frame(type_, *fields):
    body = bytes([type_]) + b''.join(fields)
    return struct.pack('>I', len(body)) + body


u8 = lambda v: bytes([v])
u32 = lambda v: struct.pack('>I', v)

BEGIN = frame(1, field(1, 'alice'), field(2, '203.0.113.7'), field(3, 'sshd'), field(4, 'ssh'),
              field(5, u8(0)), field(6, u8(0)), field(7, u32(90)), field(8, '/etc/qrauth/devices/%u'))
BEGIN_PW = frame(1, field(1, 'alice'), field(3, 'sshd'), field(9, u32(1000)), field(10, '/home/alice'))
BEGIN_UV = frame(1, field(1, 'alice'), field(3, 'sudo'), field(13, u8(1)))
BEGIN_LEASE = frame(1, field(1, 'alice'), field(3, 'sshd'), field(11, u8(1)),
                    field(12, 'publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdLi4pmxFSTvV7Ki2oqHFKsgE2yXtlVuXEEKzUFEd+T\n'
                          'keyboard-interactive/pam\n'))
WAIT = frame(2)
WAIT_MAX = frame(2, field(1, u32(60000)))
CODE = frame(3, field(1, '12345678'))
RENDER = frame(4, field(1, u8(1)))


def challenge(mode):
    return frame(0x81, field(1, '\u2580\u2584 QR\n'), field(2, 'Scan, approve, press Enter:'),
                 field(3, u32(90)), field(4, u8(mode)), field(5, 'QRA1:h:s:n'))


def verdict(result, msg=None, tries=None):
    fields = [field(1, u8(result))]
    if msg is not None:
        fields.append(field(2, msg))
    if tries is not None:
        fields.append(field(3, u8(tries)))
    return frame(0x82, *fields)


def write(dirname, name, data):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, name), 'wb') as f:
        f.write(data)


frames = {
    'begin': BEGIN, 'begin-uid-home': BEGIN_PW, 'begin-lease': BEGIN_LEASE, 'begin-uv': BEGIN_UV, 'wait': WAIT, 'wait-max': WAIT_MAX, 'code': CODE,
    'render': RENDER, 'challenge': challenge(1), 'verdict': verdict(3, 'Wrong code', 2),
    'two-frames': challenge(2) + verdict(0),
}
for name, data in frames.items():
    write('fuzz/corpus-frame', name, b'\x07' + data)

# [conv0][conv1][opts][alloc/peer][lease] + agent bytes; conv answers: 0 Enter, 1 code, 2 by turns
# garbage / "a" / "t" (the n-th prompt gets the (n mod 3)-th), 3 fail
# opts: mode (0-1), qr (2), debug (3), connect fails (4), sudo (5), user root (6), PAM_SILENT (7)
# alloc/peer: n-th allocation fails (0-2), SO_PEERCRED (3-4): real, uid 0, other uid, error;
# alice's passwd entry (5-7): found, none, ENOENT, EIO, ERANGE always, home 1025/1024 bytes, bad UTF-8
# more: option `lease` (0), SSH_AUTH_INFO_0 (1-2): absent, a publickey line, oversized, not UTF-8;
# `nouserok` (3), `failmode=open` (4), how connect fails (5-6): ECONNREFUSED, ENOENT, EAGAIN (full
# backlog), EINTR first; user typed "Alice" (7), found as alice
module = {
    'approve-enter': (0x00, 0x00, 0x01, 0, challenge(1) + verdict(0)),
    'code-right': (0x01, 0x00, 0x01, 0, challenge(1) + verdict(0)),
    'code-wrong-locked': (0x15, 0x00, 0x01, 0,
                          challenge(1) + verdict(3, None, 2) + verdict(3, None, 1) + verdict(7)),
    'info-offline-code': (0x01, 0x00, 0x02, 0, challenge(2) + verdict(5) + verdict(0)),
    'deny': (0x00, 0x00, 0x00, 0, challenge(1) + verdict(1)),
    'no-device': (0x00, 0x00, 0x00, 0, verdict(4)),
    'error': (0x00, 0x00, 0x08, 0, verdict(6, 'bad devices file')),
    'garbage-then-enter': (0x02, 0x00, 0x01, 0, challenge(1) + verdict(0)),
    'rerender-ascii-enter': (0x0a, 0x00, 0x01, 0, challenge(1) + challenge(1) + verdict(0)),
    'info-offline-rerender': (0x0a, 0x00, 0x02, 0, challenge(2) + verdict(5) + challenge(2) + verdict(0)),
    'rerender-denied': (0x0a, 0x00, 0x01, 0, challenge(1) + verdict(1)),
    'alloc-fail': (0x00, 0x00, 0x01, 2, challenge(1) + verdict(0)),
    'root-approve': (0x00, 0x00, 0x49, 0, challenge(1) + verdict(0)),
    'root-alloc-fail': (0x00, 0x00, 0x49, 2, challenge(1) + verdict(0)),
    'unreachable-sshd': (0x00, 0x00, 0x10, 0, b''),
    'unreachable-sshd-conv-fail': (0x03, 0x00, 0x11, 0, b''),
    'unreachable-sudo': (0x00, 0x00, 0x30, 0, b''),
    'unreachable-silent': (0x00, 0x00, 0x90, 0, b''),
    'peer-root': (0x00, 0x00, 0x01, 0x08, challenge(1) + verdict(0)),
    'peer-other': (0x00, 0x00, 0x01, 0x10, challenge(1) + verdict(0)),
    'peer-error': (0x00, 0x00, 0x01, 0x18, challenge(1) + verdict(0)),
    'pw-none': (0x00, 0x00, 0x01, 0x20, verdict(4)),
    'pw-eio': (0x00, 0x00, 0x01, 0x60, challenge(1) + verdict(0)),
    'pw-erange-forever': (0x00, 0x00, 0x01, 0x80, challenge(1) + verdict(0)),
    'pw-home-1025': (0x00, 0x00, 0x01, 0xa0, challenge(1) + verdict(0)),
    'pw-home-1024': (0x00, 0x00, 0x01, 0xc0, challenge(1) + verdict(0)),
    'pw-home-bad-utf8': (0x00, 0x00, 0x01, 0xe0, challenge(1) + verdict(0)),
}
module_lease = {
    # Approved by lease at BEGIN: success only with the option.
    'lease-approved': (0x00, 0x00, 0x01, 0, 0x03, verdict(0, 'qrauth: approved by lease from Pixel until 14:05')),
    'lease-verdict-without-option': (0x00, 0x00, 0x01, 0, 0x02, verdict(0)),
    'lease-no-auth-info': (0x00, 0x00, 0x01, 0, 0x01, challenge(1) + verdict(0)),
    'lease-auth-info-oversized': (0x00, 0x00, 0x01, 0, 0x05, challenge(1) + verdict(0)),
    'lease-auth-info-bad-utf8': (0x00, 0x00, 0x01, 0, 0x07, challenge(1) + verdict(0)),
}
module_more = {
    # nouserok: NO_DEVICE in answer to BEGIN is PAM_IGNORE; a failed lookup is not.
    'nouserok-no-device': (0x00, 0x00, 0x01, 0, 0x08, verdict(4)),
    'nouserok-pw-eio': (0x00, 0x00, 0x01, 0x60, 0x08, verdict(4)),
    'nouserok-failmode-open-pw-erange': (0x00, 0x00, 0x10, 0x80, 0x18, b''),
    # failmode=open: PAM_IGNORE only when nobody is there.
    'failmode-open-refused': (0x00, 0x00, 0x10, 0, 0x10, b''),
    'failmode-open-enoent': (0x00, 0x00, 0x10, 0, 0x30, b''),
    'failmode-open-busy': (0x00, 0x00, 0x10, 0, 0x50, b''),
    'failmode-open-eintr-refused': (0x00, 0x00, 0x10, 0, 0x70, b''),
    'busy-secure-sudo': (0x00, 0x00, 0x30, 0, 0x40, b''),
    'connect-eintr-approve': (0x00, 0x00, 0x01, 0, 0x60, challenge(1) + verdict(0)),
    # "Alice" typed, the account is alice: BEGIN names alice.
    'case-alice-approve': (0x00, 0x00, 0x01, 0, 0x80, challenge(1) + verdict(0)),
    'case-alice-none-nouserok': (0x00, 0x00, 0x01, 0x20, 0x88, verdict(4)),
}
for name, (c0, c1, opts, fail, data) in module.items():
    write('fuzz/corpus-module', name, bytes([c0, c1, opts, fail, 0]) + data)
for name, (c0, c1, opts, fail, lease, data) in module_lease.items():
    write('fuzz/corpus-module', name, bytes([c0, c1, opts, fail, lease]) + data)
for name, (c0, c1, opts, fail, more, data) in module_more.items():
    write('fuzz/corpus-module', name, bytes([c0, c1, opts, fail, more]) + data)
