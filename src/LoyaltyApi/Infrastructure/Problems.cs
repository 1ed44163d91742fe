using System.Text.Json;
using FluentValidation;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace LoyaltyApi.Infrastructure;

/// <summary>RFC 9457 problem responses. Every rejection carries a stable <c>code</c> and, where one is to blame, the <c>field</c>.</summary>
public static class Problems
{
    public const string TypeBase = "https://loyaltyapi.dev/problems/";

    public static ProblemHttpResult Unprocessable(string code, string detail, string? field = null) =>
        Make(StatusCodes.Status422UnprocessableEntity, "The request cannot be applied", code, detail, field);

    public static ProblemHttpResult NotFound(string what, string? field = null) =>
        Make(StatusCodes.Status404NotFound, "Not found", "not_found", $"{what} was not found.", field);

    public static ProblemHttpResult Conflict(string code, string detail, string? field = null) =>
        Make(StatusCodes.Status409Conflict, "Conflict", code, detail, field);

    public static ProblemHttpResult Forbidden(string detail) =>
        Make(StatusCodes.Status403Forbidden, "Forbidden", "forbidden", detail, null);

    public static ProblemHttpResult BadRequest(string code, string detail, string? field) =>
        Make(StatusCodes.Status400BadRequest, "Invalid request", code, detail, field);

    public static string CodeForStatus(int status) => status switch
    {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        409 => "conflict",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "rate_limited",
        _ => status >= 500 ? "internal" : "error",
    };

    public static ProblemHttpResult Make(int status, string title, string code, string detail, string? field)
    {
        var extensions = new Dictionary<string, object?> { ["code"] = code };
        if (field is not null) extensions["field"] = field;
        return TypedResults.Problem(detail, statusCode: status, title: title, type: TypeBase + code, extensions: extensions);
    }
}

/// <summary>Raised inside a transaction to reject a request; the transaction is rolled back.</summary>
public sealed class DomainRejection(int status, string code, string detail, string? field = null) : Exception(detail)
{
    public int Status { get; } = status;
    public string Code { get; } = code;
    public string? Field { get; } = field;

    public ProblemHttpResult ToProblem() => Problems.Make(Status, Status switch
    {
        404 => "Not found",
        409 => "Conflict",
        403 => "Forbidden",
        400 => "Invalid request",
        _ => "The request cannot be applied",
    }, Code, Message, Field);

    public static DomainRejection Unprocessable(string code, string detail, string? field = null) => new(422, code, detail, field);
    public static DomainRejection NotFound(string what, string? field = null) => new(404, "not_found", $"{what} was not found.", field);
}

/// <summary>Runs the FluentValidation validator of the body before the handler.</summary>
public sealed class ValidationFilter<T>(IValidator<T> validator) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var body = context.Arguments.OfType<T>().FirstOrDefault();
        if (body is null)
        {
            return Problems.BadRequest("body_required", "A JSON request body is required.", "body");
        }
        if (TextGuard.FindDirtyField(body) is { } dirty)
        {
            return Problems.BadRequest("invalid_text", "Text may not contain control characters or unpaired surrogates.", dirty);
        }
        // Every rule is synchronous: the synchronous path skips an async state machine per rule.
        var result = validator.Validate(body);
        if (!result.IsValid)
        {
            var errors = result.Errors
                .GroupBy(e => JsonNamingPolicy.CamelCase.ConvertName(e.PropertyName))
                .ToDictionary(g => g.Key, g => g.Select(e => e.ErrorMessage).Distinct().ToArray());
            return TypedResults.ValidationProblem(errors, title: "One or more fields are invalid.",
                type: Problems.TypeBase + "validation", extensions: new Dictionary<string, object?>
                {
                    ["code"] = "validation",
                    ["field"] = errors.Keys.First(),
                });
        }
        return await next(context);
    }
}

public static class ValidationExtensions
{
    /// <summary>Every API endpoint can answer 401 (no or bad credentials), 403 (wrong role or scope), 429 (rate limit) and 503 (database unavailable; retry).</summary>
    public static RouteGroupBuilder WithAuthProblems(this RouteGroupBuilder group) =>
        group.ProducesProblem(StatusCodes.Status401Unauthorized).ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status429TooManyRequests).ProducesProblem(StatusCodes.Status503ServiceUnavailable);

    public static RouteHandlerBuilder Validate<T>(this RouteHandlerBuilder builder) =>
        builder.AddEndpointFilter<ValidationFilter<T>>().ProducesValidationProblem();
}

/// <summary>Turns unreadable bodies into 400 problems naming the JSON path, and anything else into a 500 without internals.</summary>
public sealed partial class GlobalExceptionHandler(IProblemDetailsService problems, ILogger<GlobalExceptionHandler> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        static ProblemDetails Problem(int status, string title, string code, string detail, string? field = null)
        {
            var p = new ProblemDetails { Status = status, Title = title, Type = Problems.TypeBase + code, Detail = detail };
            p.Extensions["code"] = code;
            if (field is not null) p.Extensions["field"] = field;
            return p;
        }

        ProblemDetails problem;
        switch (exception)
        {
            case BadHttpRequestException bad:
            {
                var json = FindInner<JsonException>(bad);
                var field = json?.Path is { Length: > 0 } path ? path.TrimStart('$', '.') : null;
                var status = bad.StatusCode is >= 400 and < 500 ? bad.StatusCode : 400;
                problem = json is not null
                    ? Problem(status, "Invalid request", "malformed_json",
                        $"The body is not valid JSON for this endpoint{(field is { Length: > 0 } ? $" at '{field}'" : "")}.", field is { Length: > 0 } ? field : null)
                    : status == 413
                        ? Problem(status, "Invalid request", "too_large", "The request body is too large.")
                        : Problem(status, "Invalid request", "bad_request", "The request could not be read.");
                break;
            }
            case OperationCanceledException when httpContext.RequestAborted.IsCancellationRequested:
                return true;
            case System.Data.Common.DbException db when IsTransient(db):
                // The database is restarting, failing over or busy: nothing was committed, so the
                // caller can retry the same request (with its Idempotency-Key) after a moment.
                LogTransient(logger, exception.GetType().Name, httpContext.Request.Path);
                httpContext.Response.Headers.RetryAfter = "1";
                problem = Problem(503, "Database unavailable", "database_unavailable",
                    "The database could not be reached; nothing was recorded. Retry with the same Idempotency-Key.");
                break;
            default:
                LogUnhandled(logger, exception.GetType().Name, httpContext.Request.Path);
                problem = Problem(500, "Unexpected error", "internal",
                    "The request failed unexpectedly; nothing was recorded. Retry with the same Idempotency-Key.");
                break;
        }
        httpContext.Response.StatusCode = problem.Status ?? 500;
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            ProblemDetails = problem,
            Exception = exception,
        });
    }

    private static bool IsTransient(System.Data.Common.DbException e) => e switch
    {
        Npgsql.PostgresException pg => pg.IsTransient || pg.SqlState.StartsWith("57P", StringComparison.Ordinal) || pg.SqlState.StartsWith("08", StringComparison.Ordinal),
        Npgsql.NpgsqlException npgsql => npgsql.IsTransient || npgsql.InnerException is System.IO.IOException or System.Net.Sockets.SocketException,
        Microsoft.Data.Sqlite.SqliteException sqlite => sqlite.SqliteErrorCode is 5 or 6, // SQLITE_BUSY, SQLITE_LOCKED
        Microsoft.Data.SqlClient.SqlException sql => sql.IsTransient,
        _ => false,
    };

    [LoggerMessage(Level = LogLevel.Warning, Message = "Database unavailable ({ExceptionType}) on {Path}; answered 503")]
    private static partial void LogTransient(ILogger logger, string exceptionType, string path);

    private static T? FindInner<T>(Exception e) where T : Exception
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is T t) return t;
        }
        return null;
    }

    // Only the exception type and path: messages may carry request values.
    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled {ExceptionType} on {Path}")]
    private static partial void LogUnhandled(ILogger logger, string exceptionType, string path);
}

/// <summary>
/// Text in request bodies may not carry control characters (NUL breaks PostgreSQL text, the rest
/// only hides data) or unpaired surrogates; tab and line breaks are allowed. Checked on the bound
/// request, so the OpenAPI document still describes plain strings.
/// </summary>
public static class TextGuard
{
    // The properties that can hold text, with their JSON names: numbers, dates and the like are skipped
    // without being read (and boxed), and no path is built unless a string turns out dirty.
    private sealed record TextMember(string JsonName, System.Reflection.PropertyInfo Property);
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, TextMember[]> Members = new();

    /// <summary>The JSON path of the first string that is not clean, or null.</summary>
    public static string? FindDirtyField(object? value) => IsCleanDeep(value, 0) ? null : PathOfDirty(value, "", 0);

    private static bool IsCleanDeep(object? value, int depth)
    {
        if (value is null || depth > 4) return true;
        if (value is string s) return IsClean(s);
        if (CannotHoldText(value.GetType())) return true;
        if (value is System.Collections.IEnumerable items)
        {
            foreach (var item in items)
            {
                if (!IsCleanDeep(item, depth + 1)) return false;
            }
            return true;
        }
        foreach (var m in MembersOf(value.GetType()))
        {
            if (!IsCleanDeep(m.Property.GetValue(value), depth + 1)) return false;
        }
        return true;
    }

    private static string? PathOfDirty(object? value, string path, int depth)
    {
        if (value is null || depth > 4) return null;
        if (value is string s) return IsClean(s) ? null : path;
        if (CannotHoldText(value.GetType())) return null;
        if (value is System.Collections.IEnumerable items)
        {
            var i = 0;
            foreach (var item in items)
            {
                if (PathOfDirty(item, $"{path}[{i++}]", depth + 1) is { } dirty) return dirty;
            }
            return null;
        }
        foreach (var m in MembersOf(value.GetType()))
        {
            if (PathOfDirty(m.Property.GetValue(value), path.Length == 0 ? m.JsonName : $"{path}.{m.JsonName}", depth + 1) is { } dirty) return dirty;
        }
        return null;
    }

    private static bool CannotHoldText(Type type)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        return t.IsPrimitive || t.IsEnum || t == typeof(decimal) || t == typeof(DateTimeOffset) || t == typeof(DateTime)
            || t == typeof(DateOnly) || t == typeof(TimeOnly) || t == typeof(Guid);
    }

    private static TextMember[] MembersOf(Type type) => Members.GetOrAdd(type, static t => t.GetProperties()
        .Where(p => p.GetIndexParameters().Length == 0 && !CannotHoldText(p.PropertyType))
        .Select(p => new TextMember(JsonNamingPolicy.CamelCase.ConvertName(p.Name), p))
        .ToArray());

    public static bool IsClean(string value)
    {
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsControl(c) && c is not ('\t' or '\n' or '\r')) return false;
            if (char.IsHighSurrogate(c))
            {
                if (i + 1 >= value.Length || !char.IsLowSurrogate(value[i + 1])) return false;
                i++;
            }
            else if (char.IsLowSurrogate(c))
            {
                return false;
            }
        }
        return true;
    }
}
