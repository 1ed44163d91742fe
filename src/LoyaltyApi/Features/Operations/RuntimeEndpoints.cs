using System.Diagnostics;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.Operations;

/// <summary>
/// The process's own counters since it started. Read twice and divide the difference by the work done
/// between the reads: bench/run.sh reports allocations, collections and thread-pool hand-offs per
/// purchase this way.
/// </summary>
/// <param name="UptimeSeconds">Seconds since the process started.</param>
/// <param name="CpuUserMs">CPU time in user mode, all threads.</param>
/// <param name="CpuKernelMs">CPU time in the kernel, all threads: system calls, and on small virtual machines much of the cost of waking threads.</param>
/// <param name="AllocatedBytes">Bytes allocated on the managed heap, all threads.</param>
/// <param name="Gen0Collections">Garbage collections of any generation: each collection of generation 1 or 2 also collects generation 0.</param>
/// <param name="Gen1Collections">Garbage collections of generation 1 or 2.</param>
/// <param name="Gen2Collections">Full garbage collections.</param>
/// <param name="GcPauseMs">Time the runtime was paused for garbage collection.</param>
/// <param name="HeapBytes">Managed heap size after the last collection.</param>
/// <param name="WorkingSetBytes">Physical memory the process uses now.</param>
/// <param name="ThreadPoolWorkItems">Work items the thread pool has run: each is a hand-off from one thread to another, such as a socket read completing, and often wakes a sleeping thread.</param>
/// <param name="ThreadPoolThreads">Thread-pool threads that exist now.</param>
/// <param name="LockContentions">Times a thread had to wait for a lock another thread held.</param>
public sealed record RuntimeCounters(
    double UptimeSeconds,
    double CpuUserMs,
    double CpuKernelMs,
    long AllocatedBytes,
    int Gen0Collections,
    int Gen1Collections,
    int Gen2Collections,
    double GcPauseMs,
    long HeapBytes,
    long WorkingSetBytes,
    long ThreadPoolWorkItems,
    int ThreadPoolThreads,
    long LockContentions);

public static class RuntimeEndpoints
{
    public static RouteGroupBuilder MapRuntime(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/runtime").WithTags("Operations").RequireAuthorization(Policies.Admin);
        group.MapGet("", GetRuntimeCounters).WithName("GetRuntimeCounters")
            .WithSummary("The service's CPU, allocations, garbage collections and thread-pool hand-offs since it started. Admin only; holds no data about members.")
            .ProducesProblem(403);
        return group;
    }

    public static Ok<RuntimeCounters> GetRuntimeCounters()
    {
        var cpu = Environment.CpuUsage;
        using var process = Process.GetCurrentProcess();
        return TypedResults.Ok(new RuntimeCounters(
            UptimeSeconds: (DateTime.UtcNow - process.StartTime.ToUniversalTime()).TotalSeconds,
            CpuUserMs: cpu.UserTime.TotalMilliseconds,
            CpuKernelMs: cpu.PrivilegedTime.TotalMilliseconds,
            AllocatedBytes: GC.GetTotalAllocatedBytes(precise: false),
            Gen0Collections: GC.CollectionCount(0),
            Gen1Collections: GC.CollectionCount(1),
            Gen2Collections: GC.CollectionCount(2),
            GcPauseMs: GC.GetTotalPauseDuration().TotalMilliseconds,
            HeapBytes: GC.GetGCMemoryInfo().HeapSizeBytes,
            WorkingSetBytes: Environment.WorkingSet,
            ThreadPoolWorkItems: ThreadPool.CompletedWorkItemCount,
            ThreadPoolThreads: ThreadPool.ThreadCount,
            LockContentions: Monitor.LockContentionCount));
    }
}
