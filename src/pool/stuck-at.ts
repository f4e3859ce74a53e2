// Where a worker that did not say ready in time is stuck, read from the stack dump it writes
// on SIGUSR1 (faulthandler: every thread, most recent call first). The main thread's stack is
// the one that ends in `python -m pyfleet`'s own outermost frame; its innermost frame of a
// module's top-level code is the import the start is stuck in. A task module may start
// threads that import too: their stacks come first in the dump, and the first `<module>` frame
// of the dump named a module the start was not waiting for (a review).

const THREAD_HEADER = /^(Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\):$/
/** faulthandler writes at most 100 frames of a thread, then this line: the outermost are not in the dump. */
const CUT_SHORT = '  ...'
const FRAME = /^ {2}File "(.+)", line (\d+) in (.+)$/
/** The outermost frame of `python -m pyfleet`: the stack it ends is the main thread's. */
const MAIN_THREAD_BOTTOM = '_run_module_as_main'
/** The runtime's entry module, whose top-level code runs the start (task_modules.py's imports included): not where a task's import is stuck. */
const RUNTIME_MAIN = /[\\/]pyfleet[\\/]__main__\.py$/

interface Frame { file: string, line: string, name: string }

export class StuckAt {
  #frames: Frame[] = []
  /** The stack being read is the one of the thread that wrote the dump (the main thread, which handles signals). */
  #current = false

  /** Reads one line of the dump; returns where the main thread is once its stack has been read whole. */
  read (text: string): string | undefined {
    const header = THREAD_HEADER.exec(text)
    if (header !== null) {
      this.#frames = []
      this.#current = header[1] === 'Current thread'
      return undefined
    }
    // A stack deeper than the dump (a chain of 30 imports, pandas' own import at its deepest):
    // its bottom frame never comes, so the main thread's is said from the frames there are.
    if (text === CUT_SHORT && this.#current) return this.#where(true)
    const frame = FRAME.exec(text)
    if (frame === null) return undefined
    const [, file, line, name] = frame
    if (name === MAIN_THREAD_BOTTOM) return this.#where()
    this.#frames.push({ file, line, name })
    return undefined
  }

  /**
   * "still importing <file>, line <n>", or, stuck past the imports, "at <file>, line <n> in <function>".
   * The file is the task module the runtime imports (the outermost module frame), with the
   * innermost one after it when that is another: a start stuck in numpy's import said only
   * `.../numpy/core/overrides.py, line 6`, and not which line of the task module imported it (a review).
   */
  #where (cutShort = false): string | undefined {
    const importing = this.#frames.filter((f) => f.name === '<module>' && !f.file.startsWith('<') && !RUNTIME_MAIN.test(f.file))
    if (importing.length > 0) {
      const task = importing[importing.length - 1]
      const innermost = importing[0]
      if (cutShort) return `still importing ${innermost.file}, line ${innermost.line} (the stack is deeper than the dump: the task module's own line is not in it)`
      const deepest = innermost === task ? '' : ` (deepest: ${innermost.file}, line ${innermost.line})`
      return `still importing ${task.file}, line ${task.line}${deepest}`
    }
    if (cutShort) return undefined
    const innermost = this.#frames[0]
    return innermost === undefined ? undefined : `at ${innermost.file}, line ${innermost.line} in ${innermost.name}`
  }
}
