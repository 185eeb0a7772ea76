/**
 * QR decoding for the app's scanner (web and native): ZXing's QR reader only (deep imports keep
 * the other formats out of the bundle), loaded when the camera opens.
 *
 * A terminal draws the QR's light modules as blocks, so on a light-background terminal the camera
 * sees an inverted code (light modules on dark), which a decoder reads only if it tries the
 * inverted picture too. The caller alternates: `inverted` every other frame.
 */
import BinaryBitmap from '@zxing/library/esm/core/BinaryBitmap';
import HybridBinarizer from '@zxing/library/esm/core/common/HybridBinarizer';
import QRCodeReader from '@zxing/library/esm/core/qrcode/QRCodeReader';
import RGBLuminanceSource from '@zxing/library/esm/core/RGBLuminanceSource';

const reader = new QRCodeReader();

/** The text of the QR in a grey picture (one byte a pixel), or null when none is read. */
export function decodeQr(gray: Uint8ClampedArray, width: number, height: number, inverted: boolean): string | null {
  const source = new RGBLuminanceSource(gray, width, height);
  try {
    const result = reader.decode(new BinaryBitmap(new HybridBinarizer(inverted ? source.invert() : source)));
    return result.getText();
  } catch {
    // NotFound / Checksum / Format: no readable code in this frame; the next one may do.
    return null;
  } finally {
    reader.reset();
  }
}
