/**
 * Any error the app can meet, turned into a message for people: what happened and what to do.
 * Errors from the worker keep their class name (RemoteError.name), so they are told apart by name.
 */

export interface UserMessage {
  title: string;
  detail: string;
  /** What the user can do, when the detail does not already say it. */
  action?: string;
}

function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** "Download failed" while loading; a check of a model (config.json, file list) says it was a check. */
function downloadTitle(doing: string): string {
  return /^Checking/.test(doing) ? `${doing} failed` : 'Download failed';
}

export function describeError(e: unknown, doing = 'That'): UserMessage {
  const err = e instanceof Error ? e : new Error(String(e));
  const detail = err.message;
  switch (err.name) {
    case 'WebGpuUnavailableError':
      return {
        title: 'WebGPU is not available',
        detail,
        // The runtime's own message may already say which browsers to use; do not repeat it.
        action: /Chrome/.test(detail)
          ? undefined
          : 'Use a recent Chrome or Edge on a machine with a GPU (Firefox and Safari need WebGPU switched on; see README).',
      };
    case 'GpuDeviceLostError':
      return {
        title: 'The GPU was lost',
        detail,
        action: 'Reload the page; a run in progress resumes from its last checkpoint.',
      };
    case 'GpuOutOfMemoryError':
      return {
        title: 'Out of GPU memory',
        detail,
        action: 'Lower the batch size, the max sequence length or the LoRA rank, or pick a smaller model.',
      };
    case 'GpuLimitError':
      return {
        title: 'Too big for this GPU',
        detail,
        action: 'Lower the batch size or max sequence length, or pick a smaller model.',
      };
    case 'GpuValidationError':
      return {
        title: 'The GPU rejected a command',
        detail,
        action: 'This is a bug in Tabtune; the Diagnostics view helps to report it.',
      };
    case 'DatasetReadError':
      return { title: /UTF/.test(detail) ? 'Not UTF-8 text' : 'The dataset file could not be read', detail };
    case 'StorageFullError':
      return { title: 'Browser storage is full', detail };
    case 'StorageUnavailableError':
      return { title: 'Browser storage is unavailable', detail };
    case 'RunLeaseLostError':
      return { title: 'Another tab took over this run', detail };
    case 'WorkerError':
      return { title: 'The GPU worker stopped', detail, action: 'Reload the page.' };
    case 'SourceError': {
      const code = codeOf(err);
      if (code === 'network') {
        return {
          title: downloadTitle(doing),
          detail,
          action:
            'Check the connection and try again; files already downloaded are kept. The demo model works offline.',
        };
      }
      if (code === 'not-found')
        return { title: 'File not found', detail, action: 'Check the model id (owner/name) or the folder.' };
      if (code === 'unauthorized') {
        return {
          title: 'Access denied',
          detail,
          action:
            'For a gated model, accept its license on its page on huggingface.co (signed in), then save an access token under ' +
            '"Access token for gated and private models" (Model) and try again; a private model needs a token of an account ' +
            'that can read it. Or download its files there and drop the folder in Model; otherwise check the model id.',
        };
      }
      if (code === 'http')
        return {
          title: downloadTitle(doing),
          detail,
          action: 'The server had a problem: try again in a moment; files already downloaded are kept.',
        };
      return { title: 'Could not read the model', detail };
    }
    case 'ModelLoadError':
    case 'ConfigError':
    case 'ModelWeightsError':
    case 'SafetensorsError':
      return { title: 'This model cannot be used', detail };
    case 'TokenizerError':
      return { title: 'The tokenizer cannot be used', detail };
    case 'PeftError':
    case 'PeftFileError':
      return { title: 'Not a usable PEFT adapter', detail };
    case 'LoraConfigError':
      return { title: 'LoRA settings', detail };
    case 'CheckpointError':
      return { title: 'The checkpoint cannot be used', detail, action: 'Discard the run and start a new one.' };
    case 'TrainingDivergedError':
      return { title: 'Training diverged', detail };
    case 'EngineError':
      return { title: `${doing} failed`, detail };
    default:
      return { title: `${doing} failed`, detail: detail || err.name };
  }
}
