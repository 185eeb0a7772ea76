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
WAIT = frame(2)
WAIT_MAX = frame(2, field(1, u32(60000)))
CODE = frame(3, field(1, '12345678'))


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
    'begin': BEGIN, 'wait': WAIT, 'wait-max': WAIT_MAX, 'code': CODE,
    'challenge': challenge(1), 'verdict': verdict(3, 'Wrong code', 2),
    'two-frames': challenge(2) + verdict(0),
}
for name, data in frames.items():
    write('fuzz/corpus-frame', name, b'\x07' + data)

# [conv0][conv1][opts][allocfail] + agent bytes; conv answers: 0 Enter, 1 code, 2 garbage, 3 fail
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
    'alloc-fail': (0x00, 0x00, 0x01, 2, challenge(1) + verdict(0)),
}
for name, (c0, c1, opts, fail, data) in module.items():
    write('fuzz/corpus-module', name, bytes([c0, c1, opts, fail]) + data)
