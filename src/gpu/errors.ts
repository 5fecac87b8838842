/**
 * Typed errors of the GPU runtime. Each message names the thing, what was expected, what was got,
 * and what the user can do about it.
 */

export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** No WebGPU implementation or no adapter could be obtained. */
export class WebGpuUnavailableError extends GpuError {}

/** The device rejected a call (bad shader, bad bind group, size over a limit...). */
export class GpuValidationError extends GpuError {}

/** The device could not allocate memory. */
export class GpuOutOfMemoryError extends GpuError {}

/** The device was lost (driver reset, tab backgrounded too long, device.destroy()). */
export class GpuDeviceLostError extends GpuError {
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

/** A requested buffer or binding is larger than the adapter allows. */
export class GpuLimitError extends GpuError {}
