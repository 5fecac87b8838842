/**
 * The app's "Run at scale": the controller asks the worker's engine for the recipe of the loaded
 * model, dataset and current settings (fake engine here; test/engine/recipe.test.ts runs the real
 * one), names the zip after the model, and says why it cannot when it cannot.
 */
import { describe, expect, it } from 'vitest';
import { makeApp } from './helpers';

describe('Run at scale', () => {
  it('exports the current settings as a zip named after the model', async () => {
    const { c, engine } = await makeApp();
    c.setTrain({ lr: 0.003, batch: 2 });
    c.setLora({ r: 4 });
    const f = await c.recipeDownload();
    expect(f?.name).toBe('tabtune-recipe-stories260K.zip');
    expect(f?.type).toBe('application/zip');
    expect(new TextDecoder().decode(f!.bytes)).toContain('recipe for');
    expect(engine.lastRecipe?.train).toMatchObject({ lr: 0.003, batch: 2 });
    expect(engine.lastRecipe?.lora.r).toBe(4);
    expect(engine.lastRecipe?.opts.quantize).toBeNull();
  });

  it("passes the run's frozen weights: 4-bit NF4 in Settings becomes the recipe's bitsandbytes config", async () => {
    const { c, engine } = await makeApp();
    expect(await c.setFrozen({ quantize: 'nf4', doubleQuant: false })).toBe(true);
    expect(await c.recipeDownload()).not.toBeNull();
    expect(engine.lastRecipe?.opts.quantize).toEqual({ doubleQuant: false, stored: false });
    expect(await c.setFrozen({ quantize: null })).toBe(true);
    await c.recipeDownload();
    expect(engine.lastRecipe?.opts.quantize).toBeNull();
  });

  it('refuses invalid settings and reports an engine failure as a notice', async () => {
    const { c, engine } = await makeApp();
    c.setLora({ r: 0 });
    expect(await c.recipeDownload()).toBeNull();
    expect(c.state.notices.at(-1)?.detail).toMatch(/highlighted settings/);
    expect(engine.calls).not.toContain('exportRecipe');
    c.setLora({ r: 8 });
    engine.failNext.exportRecipe = new Error('The dataset was tokenized for max length 9');
    expect(await c.recipeDownload()).toBeNull();
    expect(c.state.notices.at(-1)?.detail).toMatch(/max length 9/);
  });
});
