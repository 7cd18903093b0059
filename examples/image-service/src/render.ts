/**
 * The image work itself: plain functions with no knowledge of flame-ts, so
 * they can be unit-tested or run in-process. pool.ts wraps them so they run
 * on runners. Both are real CPU work (milliseconds to seconds per image) and
 * both return encoded PNG bytes, so the HTTP process only forwards bytes.
 */
import { PNG } from "pngjs";

/** A view of the Mandelbrot set. */
export interface FractalRequest {
  /** Image size in pixels. */
  width: number;
  height: number;
  /** Point of the complex plane at the centre of the image. */
  centerX: number;
  centerY: number;
  /** 1 shows the whole set (3 units across); each doubling halves the view. */
  zoom: number;
  /** Iterations before a point counts as inside the set: more shows finer detail and costs more. */
  iterations: number;
}

/** A thumbnail of an uploaded PNG. */
export interface ThumbnailRequest {
  /** The PNG file as uploaded. */
  png: Uint8Array;
  /** Size of the result. When only one is given, the other keeps the aspect ratio. */
  width?: number;
  height?: number;
}

/** The uploaded bytes are not a PNG pngjs can read. Its `code` survives the trip back from a runner. */
export class InvalidImageError extends Error {
  readonly code = "INVALID_IMAGE";
  override readonly name = "InvalidImageError";
}

/** Renders the Mandelbrot set with escape-time colouring and returns the PNG file. */
export function renderFractal({ width, height, centerX, centerY, zoom, iterations }: FractalRequest): Buffer {
  const image = new PNG({ width, height });
  const scale = 3 / zoom / Math.min(width, height);
  for (let y = 0; y < height; y++) {
    const ci = centerY + (y - height / 2) * scale;
    for (let x = 0; x < width; x++) {
      const cr = centerX + (x - width / 2) * scale;
      let zr = 0;
      let zi = 0;
      let n = 0;
      while (n < iterations && zr * zr + zi * zi < 4) {
        const t = zr * zr - zi * zi + cr;
        zi = 2 * zr * zi + ci;
        zr = t;
        n++;
      }
      const offset = (y * width + x) * 4;
      const shade = n === iterations ? 0 : Math.sqrt(n / iterations);
      image.data[offset] = Math.round(255 * Math.min(1, shade * 2.2));
      image.data[offset + 1] = Math.round(255 * shade * shade);
      image.data[offset + 2] = Math.round(255 * Math.min(1, 0.35 + shade));
      image.data[offset + 3] = 255;
    }
  }
  return PNG.sync.write(image);
}

/** Largest uploaded image decoded, in pixels: a bound on a runner's memory (4 bytes per pixel). */
export const MAX_SOURCE_PIXELS = 50_000_000;

/**
 * Decodes a PNG, resizes it with area averaging (each output pixel is the
 * mean of the source pixels it covers, weighted by alpha), and encodes the
 * result. Throws InvalidImageError when the bytes are not a readable PNG.
 */
export function makeThumbnail({ png, width, height }: ThumbnailRequest): Buffer {
  const source = decode(png);
  const target = targetSize(source.width, source.height, width, height);
  const output = new PNG({ width: target.width, height: target.height });
  const xRatio = source.width / target.width;
  const yRatio = source.height / target.height;
  for (let ty = 0; ty < target.height; ty++) {
    const y0 = Math.floor(ty * yRatio);
    const y1 = Math.max(y0 + 1, Math.floor((ty + 1) * yRatio));
    for (let tx = 0; tx < target.width; tx++) {
      const x0 = Math.floor(tx * xRatio);
      const x1 = Math.max(x0 + 1, Math.floor((tx + 1) * xRatio));
      let r = 0;
      let g = 0;
      let b = 0;
      let a = 0;
      for (let sy = y0; sy < y1; sy++) {
        let offset = (sy * source.width + x0) * 4;
        for (let sx = x0; sx < x1; sx++, offset += 4) {
          // Weighting colour by alpha keeps transparent pixels' (meaningless) colour out of the mix.
          const alpha = source.data[offset + 3]!;
          r += source.data[offset]! * alpha;
          g += source.data[offset + 1]! * alpha;
          b += source.data[offset + 2]! * alpha;
          a += alpha;
        }
      }
      const count = (y1 - y0) * (x1 - x0);
      const target4 = (ty * target.width + tx) * 4;
      output.data[target4] = a === 0 ? 0 : Math.round(r / a);
      output.data[target4 + 1] = a === 0 ? 0 : Math.round(g / a);
      output.data[target4 + 2] = a === 0 ? 0 : Math.round(b / a);
      output.data[target4 + 3] = Math.round(a / count);
    }
  }
  return PNG.sync.write(output);
}

/** The 8 bytes every PNG file starts with. */
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function decode(png: Uint8Array): PNG {
  const bytes = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  // The size is in the IHDR chunk right after the signature: check it before decoding allocates the pixels.
  if (bytes.length < 24 || !bytes.subarray(0, 8).equals(PNG_SIGNATURE) || bytes.toString("latin1", 12, 16) !== "IHDR") {
    throw new InvalidImageError("the request body is not a PNG image (send the bytes of a .png file)");
  }
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  if (width * height > MAX_SOURCE_PIXELS) {
    throw new InvalidImageError(`the image is ${width}x${height}; at most ${MAX_SOURCE_PIXELS} pixels are accepted`);
  }
  try {
    return PNG.sync.read(bytes);
  } catch (error) {
    throw new InvalidImageError(`the request body is not a readable PNG image (${(error as Error).message})`);
  }
}

/** The thumbnail's size: as asked, or with the missing side following the source's aspect ratio. */
export function targetSize(sourceWidth: number, sourceHeight: number, width?: number, height?: number): { width: number; height: number } {
  if (width !== undefined && height !== undefined) return { width, height };
  if (width !== undefined) return { width, height: Math.max(1, Math.round((width * sourceHeight) / sourceWidth)) };
  if (height !== undefined) return { width: Math.max(1, Math.round((height * sourceWidth) / sourceHeight)), height };
  throw new InvalidImageError("a thumbnail needs a width or a height");
}
