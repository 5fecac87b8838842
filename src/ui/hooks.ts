/** React access to the controller and its state. */
import { createContext, useContext, useSyncExternalStore } from 'react';
import type { AppController } from './controller';
import type { AppState } from './state';

export const ControllerContext = createContext<AppController | null>(null);

export function useController(): AppController {
  const c = useContext(ControllerContext);
  if (!c) throw new Error('useController() outside <ControllerContext.Provider>');
  return c;
}

/** The whole state; components re-render when it changes (it is small). */
export function useAppState(): AppState {
  const c = useController();
  return useSyncExternalStore(c.store.subscribe, c.store.get, c.store.get);
}
