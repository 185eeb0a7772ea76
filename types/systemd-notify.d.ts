// The systemd-notify package (CommonJS, no types): it runs the `systemd-notify` CLI of systemd.
declare module 'systemd-notify' {
  interface NotifyOptions {
    /** `--ready`: READY=1. */
    ready?: boolean;
    /** `--status=TEXT`: STATUS=TEXT. */
    status?: string;
    /** `--pid=N`: MAINPID=N (the package adds our own pid whenever ready or status is given). */
    pid?: number;
    booted?: boolean;
  }
  /** Resolves when the CLI exits 0; rejects with its stderr text (a string) or a spawn Error. */
  function notify(opts?: NotifyOptions): Promise<unknown>;
  export default notify;
}
