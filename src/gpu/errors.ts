/**
 * Typed errors of the GPU runtime. Each message names the thing, what was expected, what was got,
 * and what the user can do about it.
 *
 * Every class sets its `name` as a string literal: the app tells errors apart by name (they cross
 * the worker boundary as `{name, message}`), and a production build's minifier renames classes, so
 * `new.target.name` would turn "GpuOutOfMemoryError" into something like "e".
 */

export class GpuError extends Error {
  constructor(message: string, name = 'GpuError') {
    super(message);
    this.name = name;
  }
}

/** No WebGPU implementation or no adapter could be obtained. */
export class WebGpuUnavailableError extends GpuError {
  constructor(message: string) {
    super(message, 'WebGpuUnavailableError');
  }
}

/** The device rejected a call (bad shader, bad bind group, size over a limit...). */
export class GpuValidationError extends GpuError {
  constructor(message: string) {
    super(message, 'GpuValidationError');
  }
}

/** The device could not allocate memory. */
export class GpuOutOfMemoryError extends GpuError {
  constructor(message: string) {
    super(message, 'GpuOutOfMemoryError');
  }
}

/** The device was lost (driver reset, tab backgrounded too long, device.destroy()). */
export class GpuDeviceLostError extends GpuError {
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message, 'GpuDeviceLostError');
  }
}

/** A requested buffer or binding is larger than the adapter allows. */
export class GpuLimitError extends GpuError {
  constructor(message: string) {
    super(message, 'GpuLimitError');
  }
}
