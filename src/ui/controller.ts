/**
 * The app's controller: owns the state store and the AppContext, starts up (storage, GPU, the
 * shipped demo model and dataset), and exposes every user action the components call. The work of
 * each area lives in actions/*.ts; this file wires them together and keeps the derived things
 * (memory estimate, dataset summary) up to date when settings change.
 *
 * A little over 500 lines because it is the one surface the components call: each method is a
 * few lines that delegate to actions/*.ts or the engine.
 */
import type { KernelBenchSize, KernelsBench } from '../bench/kernels-bench';
import { frozenSettings, sameFrozen } from '../engine/frozen';
import type {
  AttentionMode,
  ColumnMapping,
  FrozenWeightsSettings,
  KernelMode,
  LoraSettings,
  SamplingSettings,
  SavedKernelChoices,
  SelfTestCheck,
  SelfTestReport,
  TrainSettings,
} from '../engine/types';
import { AdapterLibrary } from '../store/adapters';
import { type TabtuneDb, openTabtuneDb } from '../store/db';
import { ModelByteCache, ModelCacheIndex } from '../store/model-cache';
import { RunStore } from '../store/runs';
import * as chat from './actions/chat';
import * as compare from './actions/compare';
import * as dataset from './actions/dataset';
import * as hubData from './actions/hub-dataset';
import * as library from './actions/library';
import * as model from './actions/model';
import * as recipe from './actions/recipe';
import * as training from './actions/training';
import { DEMO_MODEL_ID, DEMO_PROMPTS, type ModelChoice, looksInstruct } from './catalog';
import { type AppContext, type AppEngine, type Platform, patch } from './context';
import { describeError } from './errors';
import { loadSettings, saveSettings, settingsForModel } from './settings';
import { loadAttentionMode, loadKernelMode, saveAttentionMode, saveKernelMode } from './kernels';
import { loadHubToken, saveHubToken, tokenProblem } from './token';
import { BUILT_IN_PRESETS, type Preset, deletePreset, loadPresets, parsePreset, savePreset } from './presets';
import { type AppState, type ChatSlice, type Notice, type View, Store, initialState, runBusy } from './state';
import { hasErrors, validateLora, validateTrain } from './validate';

export interface ControllerOptions {
  engine: AppEngine;
  platform: Platform;
  /** Opens the database (tests pass a fake-indexeddb one); a failure leaves the app without storage. */
  openDb?: () => Promise<TabtuneDb>;
  tabId: string;
  /** Load the demo model and dataset at start (default true). */
  autoDemo?: boolean;
  useByteCache?: boolean;
}

export class AppController {
  readonly store = new Store<AppState>(initialState());
  readonly ctx: AppContext;
  private nextNotice = 1;
  private estimateTimer: ReturnType<typeof setTimeout> | null = null;
  private datasetTimer: ReturnType<typeof setTimeout> | null = null;
  private estimateSeq = 0;

  constructor(private readonly opts: ControllerOptions) {
    this.ctx = {
      store: this.store,
      engine: opts.engine,
      platform: opts.platform,
      stores: null,
      byteCache: opts.useByteCache === false ? null : new ModelByteCache(),
      notify: (n) => this.notify(n),
    };
    opts.engine.onFatal = (e) => {
      patch(this.ctx, 'gpu', { status: 'lost', error: describeError(e) });
      this.notify({ level: 'error', ...describeError(e) });
    };
    opts.engine.onCacheWarning = (message) =>
      this.notify({ level: 'warning', title: 'Model not cached', detail: message });
  }

  get state(): AppState {
    return this.store.get();
  }

  // ------------------------------------------------------------------ start-up

  async start(): Promise<void> {
    // The settings of the last visit (the demo model, loaded next, keeps them).
    const saved = loadSettings(this.opts.platform.settingsStorage);
    if (saved) this.store.update((s) => ({ ...s, ...saved, settingsEdited: true }));
    try {
      const db = await (this.opts.openDb ?? openTabtuneDb)();
      this.ctx.stores = {
        adapters: new AdapterLibrary(db),
        runs: new RunStore(db, this.opts.tabId),
        models: new ModelCacheIndex(db),
      };
    } catch (e) {
      this.store.update((s) => ({ ...s, storageOk: false }));
      this.notify({
        level: 'warning',
        ...describeError(e),
        action: 'Adapters can still be trained and downloaded, but are not kept.',
      });
    }
    const gpuReady = this.startGpu();
    await Promise.all([library.refreshLibrary(this.ctx), training.refreshResumable(this.ctx)]);
    await gpuReady;
    if (this.opts.autoDemo !== false) await this.loadDemo();
  }

  private async startGpu(): Promise<void> {
    try {
      const info = this.ctx.engine.gpuInfo();
      // Sent at once, so the worker has the modes before any run (a failed start fails them all).
      this.ctx.engine.setKernelMode(this.kernelMode()).catch(() => undefined);
      this.ctx.engine.setAttentionMode(this.attentionMode()).catch(() => undefined);
      patch(this.ctx, 'gpu', { status: 'ready', info: await info, error: null });
    } catch (e) {
      patch(this.ctx, 'gpu', { status: 'unavailable', info: null, error: describeError(e) });
    }
  }

  /** Runs the kernels' self-test in the GPU worker (the Diagnostics view); `onCheck` after each check. */
  runSelfTest(onCheck?: (check: SelfTestCheck) => void): Promise<SelfTestReport> {
    return this.ctx.engine.selfTest(onCheck);
  }

  /** Which matmul kernels run (Diagnostics; kept in this browser): auto-tuned, off, or a pinned member. */
  kernelMode(): KernelMode {
    return loadKernelMode(this.opts.platform.settingsStorage);
  }

  /** Keeps the kernel mode and gives it to the GPU worker (it applies from the next run on). */
  async setKernelMode(mode: KernelMode): Promise<void> {
    saveKernelMode(this.opts.platform.settingsStorage, mode);
    await this.ctx.engine.setKernelMode(mode);
  }

  /** Which attention kernels run (Diagnostics; kept in this browser): by device class, tiled or direct. */
  attentionMode(): AttentionMode {
    return loadAttentionMode(this.opts.platform.settingsStorage);
  }

  /** Keeps the attention mode and gives it to the GPU worker (it applies from the next run on). */
  async setAttentionMode(mode: AttentionMode): Promise<void> {
    saveAttentionMode(this.opts.platform.settingsStorage, mode);
    await this.ctx.engine.setAttentionMode(mode);
  }

  /** The kernel choices tuned and saved per device (this one's marked `current`). */
  kernelChoices(): Promise<SavedKernelChoices[]> {
    return this.ctx.engine.kernelChoices();
  }

  forgetKernelChoices(deviceKey: string): Promise<void> {
    return this.ctx.engine.forgetKernelChoices(deviceKey);
  }

  /** The kernel bench in the GPU worker (Diagnostics' "Benchmark this device"); `onLine` per measured line. */
  benchKernels(size: KernelBenchSize, onLine: (line: string) => void): Promise<KernelsBench> {
    const e = this.ctx.engine;
    if (!e.benchKernels) return Promise.reject(new Error('This engine has no kernel bench.'));
    return e.benchKernels(size, onLine);
  }

  /** Selects and loads the shipped demo model and dataset (no network). */
  async loadDemo(): Promise<void> {
    await this.chooseModel({ kind: 'demo', id: DEMO_MODEL_ID });
    if (this.state.gpu.status === 'ready' && this.state.model.check.status === 'ready') await this.loadModel();
    if (!this.state.dataset.content) await dataset.loadDemoDataset(this.ctx, { auto: true });
    this.setDefaultPrompts();
  }

  private setDefaultPrompts(): void {
    const s = this.state;
    if (s.compare.prompts) return;
    const prompts = s.model.info?.id === DEMO_MODEL_ID ? DEMO_PROMPTS.join('\n') : 'Write a short poem about the sea.';
    patch(this.ctx, 'compare', { prompts });
  }

  // ------------------------------------------------------------------ notices and navigation

  notify(n: Omit<Notice, 'id'>): void {
    const notice: Notice = { ...n, id: this.nextNotice++ };
    // A notice replaces an earlier one of the same kind ("Adapter imported" three times is one card, the newest).
    this.store.update((s) => ({
      ...s,
      notices: [...s.notices.filter((o) => o.title !== notice.title || o.level !== notice.level).slice(-4), notice],
    }));
  }

  dismiss(id: number): void {
    this.store.update((s) => ({ ...s, notices: s.notices.filter((n) => n.id !== id) }));
  }

  go(view: View): void {
    // Info about what was just done in a view (e.g. "Adapter imported") stays with that view.
    this.store.update((s) => ({
      ...s,
      view,
      notices: s.notices.filter((n) => n.level !== 'info' || !n.view || n.view === view),
    }));
    if (view === 'library') void library.refreshLibrary(this.ctx);
    if (view === 'train') void training.refreshResumable(this.ctx);
  }

  /** Looks again at the stored runs: which can be resumed, and which another tab is training. */
  refreshRuns(): Promise<void> {
    return training.refreshResumable(this.ctx);
  }

  // ------------------------------------------------------------------ model

  chooseModel(choice: ModelChoice): Promise<void> {
    return model.checkModel(this.ctx, choice);
  }

  async loadModel(): Promise<boolean> {
    const ok = await model.loadChosenModel(this.ctx);
    if (ok) {
      this.setDefaultPrompts();
      const info = this.state.model.info!;
      patch(this.ctx, 'compare', {
        sampling: { ...this.state.compare.sampling, chat: looksInstruct(info.id, info.hasChatTemplate) },
      });
      patch(this.ctx, 'chat', chat.chatDefaults(info, this.state.chat.sampling));
      await Promise.all([dataset.analyseDataset(this.ctx), this.refreshEstimate()]);
    }
    return ok;
  }

  /**
   * Settings: how the frozen weights are held (16-bit / 4-bit NF4). Applies to the next load; a
   * loaded model is loaded again with it (from the browser's cache), keeping the run settings.
   */
  async setFrozen(p: Partial<FrozenWeightsSettings>): Promise<boolean> {
    this.store.update((s) => ({ ...s, frozen: { ...s.frozen, ...p } }));
    model.recomputeCost(this.ctx);
    const s = this.state;
    const info = s.model.info;
    const busy = runBusy(s.run.status);
    if (!info || busy || s.model.load.status === 'loading' || !model.isChoiceLoaded(this.store, s)) return false;
    // A 4-bit checkpoint is 4-bit as stored; otherwise reload only when the weights would change.
    if (info.quantization?.source === 'checkpoint' || sameFrozen(frozenSettings(info.quantization), s.frozen)) {
      return false;
    }
    const ok = await model.loadChosenModel(this.ctx, { keepSettings: true });
    if (ok) await Promise.all([dataset.analyseDataset(this.ctx), this.refreshEstimate()]);
    return ok;
  }

  // ------------------------------------------------------------------ dataset

  setDatasetText(fileName: string, content: string): Promise<boolean> {
    return dataset.setDataset(this.ctx, fileName, content);
  }

  readDatasetFile(file: File): Promise<boolean> {
    return dataset.readDatasetFile(this.ctx, file);
  }

  useDemoDataset(): Promise<boolean> {
    return dataset.loadDemoDataset(this.ctx);
  }

  setDatasetFormat(format: AppState['dataset']['format']): Promise<boolean> {
    patch(this.ctx, 'dataset', { format });
    return dataset.analyseDataset(this.ctx);
  }

  setDatasetPage(page: number): void {
    patch(this.ctx, 'dataset', { page });
  }

  setDatasetMapping(mapping: ColumnMapping | null): Promise<boolean> {
    return dataset.setDatasetMapping(this.ctx, mapping);
  }

  listHubDataset(repo: string): Promise<boolean> {
    return hubData.listHubFiles(this.ctx, repo);
  }

  chooseHubSplit(split: string): void {
    hubData.chooseHubSplit(this.ctx, split);
  }

  chooseHubFile(path: string): void {
    hubData.chooseHubFile(this.ctx, path);
  }

  downloadHubDataset(): Promise<boolean> {
    return hubData.downloadHubFile(this.ctx);
  }

  // ------------------------------------------------------------------ settings

  setLora(p: Partial<LoraSettings>): void {
    this.store.update((s) => ({ ...s, lora: { ...s.lora, ...p }, settingsEdited: true }));
    saveSettings(this.opts.platform.settingsStorage, this.state);
    this.settingsChanged();
  }

  // ------------------------------------------------------------------ Hub access token

  /** Whether an access token is kept (the token itself never goes back to the page). */
  hasHubToken(): boolean {
    return loadHubToken(this.opts.platform.settingsStorage) !== null;
  }

  /** Keeps (or, with null, removes) the access token; returns why it is refused, or null. */
  setHubToken(token: string | null): string | null {
    if (token !== null) {
      const problem = tokenProblem(token);
      if (problem) return problem;
    }
    saveHubToken(this.opts.platform.settingsStorage, token);
    return null;
  }

  // Presets: built in, the user's own (kept beside the settings) and shared as JSON files.
  presets(): Preset[] {
    return [...BUILT_IN_PRESETS, ...loadPresets(this.opts.platform.settingsStorage)];
  }

  /** Applies what the preset names; what does not fit the loaded model is changed and said. */
  applyPreset(p: Preset): void {
    const s = this.state;
    const next = { lora: { ...s.lora, ...p.lora }, train: { ...s.train, ...p.train } };
    const info = s.model.info;
    const { lora, train, changes } = info ? settingsForModel(next, true, info) : { ...next, changes: [] };
    this.setLora(lora);
    this.setTrain(train);
    this.ctx.notify({
      level: 'info',
      title: `Preset "${p.name}" applied`,
      detail: changes.length ? changes.join(' ') : 'Every setting it names is set; the others are as they were.',
      view: 'settings',
    });
  }

  /** Saves the current settings as a preset of this name (replacing one of the same name). */
  saveCurrentPreset(name: string): Preset[] {
    const s = this.state;
    return savePreset(this.opts.platform.settingsStorage, { name: name.trim(), lora: s.lora, train: s.train });
  }

  deletePreset(name: string): Preset[] {
    return deletePreset(this.opts.platform.settingsStorage, name);
  }

  /** Reads a shared preset file and keeps it; null when it is not one (said in a notice). */
  importPreset(text: string, fileName: string): Preset | null {
    try {
      const p = parsePreset(text, fileName);
      savePreset(this.opts.platform.settingsStorage, p);
      return p;
    } catch (e) {
      this.ctx.notify({ level: 'error', ...describeError(e, 'Reading the preset') });
      return null;
    }
  }

  setTrain(p: Partial<TrainSettings>): void {
    this.store.update((s) => ({ ...s, train: { ...s.train, ...p }, settingsEdited: true }));
    saveSettings(this.opts.platform.settingsStorage, this.state);
    this.settingsChanged();
    if ('maxLen' in p || 'valFraction' in p || 'seed' in p) {
      if (this.datasetTimer) clearTimeout(this.datasetTimer);
      this.datasetTimer = setTimeout(() => {
        const s = this.state;
        // During a run the worker is busy; the next run re-reads the data with its own settings.
        const busy = runBusy(s.run.status);
        if (!busy && !hasErrors(validateTrain(s.train, s.model.info))) void dataset.analyseDataset(this.ctx);
      }, 400);
    }
  }

  setSampling(p: Partial<SamplingSettings>): void {
    patch(this.ctx, 'compare', { sampling: { ...this.state.compare.sampling, ...p } });
  }

  private settingsChanged(): void {
    model.recomputeCost(this.ctx);
    if (this.estimateTimer) clearTimeout(this.estimateTimer);
    this.estimateTimer = setTimeout(() => void this.refreshEstimate(), 250);
  }

  /** The engine's estimate (trainable parameters, memory) for the current settings. */
  async refreshEstimate(): Promise<void> {
    const s = this.state;
    if (
      !s.model.info ||
      hasErrors(validateLora(s.lora, s.model.info)) ||
      hasErrors(validateTrain(s.train, s.model.info))
    ) {
      patch(this.ctx, 'estimate', { status: 'idle', value: null, error: null });
      return;
    }
    if (runBusy(s.run.status)) return;
    const seq = ++this.estimateSeq;
    patch(this.ctx, 'estimate', { status: 'working' });
    try {
      const value = await this.ctx.engine.estimate(s.lora, s.train);
      if (seq === this.estimateSeq) patch(this.ctx, 'estimate', { status: 'ready', value, error: null });
    } catch (e) {
      if (seq === this.estimateSeq)
        patch(this.ctx, 'estimate', { status: 'error', value: null, error: describeError(e, 'Estimating') });
    }
  }

  // ------------------------------------------------------------------ training

  startTraining(): Promise<void> {
    return training.startTraining(this.ctx);
  }
  pause(): void {
    training.pauseTraining(this.ctx);
  }
  resume(): void {
    training.resumeTraining(this.ctx);
  }
  stop(): void {
    training.stopTraining(this.ctx);
  }
  resumeRun(runId: string): Promise<void> {
    return training.resumeRun(this.ctx, runId);
  }
  discardRun(runId: string): Promise<void> {
    return training.discardRun(this.ctx, runId);
  }
  startBlockers(): string[] {
    return training.startBlockers(this.ctx);
  }

  // ------------------------------------------------------------------ library

  refreshLibrary(): Promise<void> {
    return library.refreshLibrary(this.ctx);
  }
  renameAdapter(id: string, name: string): Promise<boolean> {
    return library.renameAdapter(this.ctx, id, name);
  }
  deleteAdapter(id: string): Promise<void> {
    return library.deleteAdapter(this.ctx, id);
  }
  deleteCachedModel(id: string): Promise<void> {
    return library.deleteCachedModel(this.ctx, id);
  }
  importAdapter(files: { name: string; bytes: () => Promise<Uint8Array> }[]) {
    return library.importAdapter(this.ctx, files);
  }
  adapterDownload(id: string, what: 'zip' | 'config' | 'model') {
    return library.adapterDownload(this.ctx, id, what);
  }
  /** The loaded model with the adapter merged in, as a zip (null when it failed; said in a notice). */
  mergedDownload(id: string, onProgress?: (done: number, total: number) => void) {
    return library.mergedDownload(this.ctx, id, onProgress);
  }
  pushAdapterToHub(id: string, repo: string, isPrivate: boolean, onPhase?: (phase: string) => void) {
    return library.pushToHub(this.ctx, id, repo, isPrivate, onPhase);
  }

  /** "Run at scale": the run as a zip of a transformers + PEFT + TRL project (null when it failed; said in a notice). */
  recipeDownload() {
    return recipe.recipeDownload(this.ctx);
  }

  // ------------------------------------------------------------------ compare

  setPrompts(prompts: string): void {
    patch(this.ctx, 'compare', { prompts });
  }
  toggleCompareAdapter(id: string, on: boolean): void {
    const ids = this.state.compare.adapterIds.filter((x) => x !== id);
    patch(this.ctx, 'compare', { adapterIds: on ? [...ids, id] : ids });
  }
  runCompare(): Promise<void> {
    return compare.runCompare(this.ctx);
  }
  runEvaluation(): Promise<void> {
    return compare.runEvaluation(this.ctx);
  }
  compareBlocker(): string | null {
    return compare.compareBlocker(this.ctx);
  }

  // ------------------------------------------------------------------ chat

  /** The draft, the system prompt, the prompt mode, or who answers next ('base' or an adapter id). */
  setChat(p: Partial<Pick<ChatSlice, 'draft' | 'system' | 'mode' | 'adapterKey'>>): void {
    patch(this.ctx, 'chat', p);
  }
  setChatSampling(p: Partial<SamplingSettings>): void {
    patch(this.ctx, 'chat', { sampling: { ...this.state.chat.sampling, ...p } });
  }
  sendChat(): Promise<void> {
    return chat.sendChat(this.ctx);
  }
  regenerateChat(): Promise<void> {
    return chat.regenerateChat(this.ctx);
  }
  stopChat(): void {
    chat.stopChat(this.ctx);
  }
  clearChat(): void {
    chat.clearChat(this.ctx);
  }
  chatBlocker(): string | null {
    return chat.chatBlocker(this.ctx);
  }
}
