/**
 * flame-ts: wrap any function, and it runs on a short-lived copy of your app
 * on another machine, booted on demand and shut down when idle.
 *
 * This is the only public entry point; everything else is internal.
 */
export { Pool, type PoolStats } from "./pool/pool.js";
export type { DurationStats } from "./observability/duration-summary.js";
export type {
  PoolOptions,
  CallOptions,
  ResizeOptions,
  GrowInfo,
  GrowResult,
  ShrinkInfo,
  ShrinkReason,
  IdleShutdownPolicy,
} from "./pool/options.js";
export type { DefinedFunction, RemoteFunction } from "./pool/function.js";
export { currentCall, type CallContext } from "./call-context.js";
export type { PlacedChild } from "./pool/child.js";
export type { Backend, ProvisionRequest, ProvisionedRunner, ListedRunner } from "./backends/backend.js";
export type { ControlPlaneAddress } from "./control-plane/address.js";
export type { ControlPlaneOptions } from "./backends/control-plane-options.js";
export { ProcessBackend, type ProcessBackendOptions } from "./backends/process.js";
export { LocalBackend } from "./backends/local.js";
export {
  FlyBackend,
  FlyApiError,
  type FlyBackendOptions,
  type FlyGuestOptions,
  type FlyInitOptions,
  type FlyStopSignal,
  type FlySecret,
} from "./backends/fly.js";
export {
  Ec2Backend,
  type Ec2BackendOptions,
  type Ec2Credentials,
  type Ec2LaunchTemplate,
  type Ec2SpotOptions,
  type Ec2UserDataContext,
} from "./backends/ec2.js";
export {
  KubernetesBackend,
  KubernetesApiError,
  type KubernetesBackendOptions,
  type KubernetesObject,
  type KubernetesResources,
} from "./backends/kubernetes.js";
export { isRunner, currentRunner, type RunnerIdentity } from "./runtime.js";
export { consoleLogger, type Logger, type LogLevel } from "./log.js";
export {
  CALL_CHANNEL,
  BOOT_START_CHANNEL,
  BOOT_END_CHANNEL,
  SHRINK_CHANNEL,
  RUNNER_EXIT_CHANNEL,
  type CallChannelContext,
  type BootStartMessage,
  type BootEndMessage,
  type ShrinkMessage,
  type RunnerExitMessage,
} from "./observability/channels.js";
export {
  ERROR_CODES,
  type FlameErrorCode,
  FlameError,
  InvalidOptionError,
  CallTimeoutError,
  CallAbortedError,
  BootError,
  BootTimeoutError,
  QueueTimeoutError,
  RunnerExitedError,
  ThreadExitedError,
  QueueFullError,
  PoolStoppedError,
  RemoteError,
  SerializationError,
  UnknownFunctionError,
  VersionMismatchError,
  UnguardedCallError,
  BackendError,
} from "./errors.js";
