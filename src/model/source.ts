/**
 * Where model files come from. One interface for every origin:
 *   DirSource       a local folder (Node; node:fs is imported lazily so browser bundles stay clean)
 *   UrlSource       the Hugging Face Hub (`{endpoint}/{repo}/resolve/{revision}/{path}`) or any base URL,
 *                   streamed with download progress, with an optional byte cache (Cache API / OPFS)
 *   FileListSource  browser `File`s from a dropped or picked folder, matched by relative path
 *   MemorySource    files already in memory (bundled demo models, tests)
 *
 * Paths are relative, '/'-separated ("config.json", "model-00001-of-00002.safetensors").
 * A file that does not exist is reported as a SourceError with code 'not-found', so callers can
 * tell "absent" from "unreadable".
 *
 * This file is the one place callers import them from; each origin lives in its own file
 * (source-dir.ts, source-url.ts, source-files.ts) over what they share (source-common.ts).
 */

export { type ChunkFn, type ModelSource, type ReadProgress, SourceError, isNotFound } from './source-common';
export { DirSource } from './source-dir';
export { type ByteCache, HF_ENDPOINT, UrlSource, hubIdProblem } from './source-url';
export { FileListSource, MemorySource } from './source-files';
