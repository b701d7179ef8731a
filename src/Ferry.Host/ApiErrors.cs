using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Ferry.Host;

/// <summary>
/// Every error of the control API is <c>{"error": "one line"}</c> with its status: the host's own
/// refusals (<see cref="ApiException"/>, <see cref="VmStateException"/>), requests ASP.NET could not
/// bind (malformed JSON, a missing body, a body over the size limit), routes that do not exist, and,
/// as 500, anything else, which is also logged. Messages name the field at fault, never a .NET type.
/// </summary>
public static partial class ApiErrors
{
    public static async Task RunAsync(HttpContext context, RequestDelegate next, ILogger log)
    {
        int status;
        string message;
        try
        {
            await next(context).ConfigureAwait(false);
            if (context.Response.HasStarted || context.Response.StatusCode < 400 || context.Response.ContentLength > 0 || context.Response.ContentType is not null)
            {
                return;
            }

            // A status without a body (no such route, wrong method): give it one.
            status = context.Response.StatusCode;
            message = status switch
            {
                404 => $"no such API call: {context.Request.Method} {context.Request.Path} (docs/api.md lists them)",
                405 => $"{context.Request.Method} is not allowed on {context.Request.Path}",
                _ => $"HTTP {status}",
            };
        }
        catch (ApiException e)
        {
            (status, message) = (e.Status, e.Message);
        }
        catch (VmStateException e)
        {
            (status, message) = (409, e.Message);
        }
        catch (BadHttpRequestException e)
        {
            (status, message) = (e.StatusCode, Describe(e));
        }
        catch (Exception e) when (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
        {
            log.LogError(e, "{Method} {Path} failed", context.Request.Method, context.Request.Path);
            (status, message) = (500, $"internal error: {e.Message}");
        }

        if (context.Response.HasStarted)
        {
            return;
        }

        context.Response.Clear();
        context.Response.StatusCode = status;
        await context.Response.WriteAsJsonAsync(new ErrorResponse(message), ApiJson.Options).ConfigureAwait(false);
    }

    /// <summary>A binding failure in the caller's terms.</summary>
    public static string Describe(BadHttpRequestException e)
    {
        if (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return "request body too large" + (LimitPattern().Match(e.Message) is { Success: true } m && long.TryParse(m.Groups[1].Value, out long limit)
                ? $" (limit {limit >> 20} MiB)"
                : "");
        }

        if (e.StatusCode == StatusCodes.Status415UnsupportedMediaType)
        {
            return "the request body must be JSON (Content-Type: application/json)";
        }

        if (e.InnerException is JsonException json)
        {
            string where = string.IsNullOrEmpty(json.Path) || json.Path == "$" ? "" : $" at {json.Path}";
            Match missing = MissingPattern().Match(json.Message);
            return missing.Success
                ? $"the request body lacks required fields: {missing.Groups[1].Value.TrimEnd('.')}"
                : $"the request body is not valid JSON for this call{where}";
        }

        if (e.Message.Contains("was not provided", StringComparison.Ordinal))
        {
            return "this call needs a JSON body";
        }

        Match bind = BindPattern().Match(e.Message);
        return bind.Success ? $"'{bind.Groups[2].Value}' is not a valid value for {bind.Groups[1].Value}" : "bad request";
    }

    [GeneratedRegex(@"max request body size is (\d+)")]
    private static partial Regex LimitPattern();

    [GeneratedRegex("missing required properties[^:]*: (.*)$")]
    private static partial Regex MissingPattern();

    [GeneratedRegex("Failed to bind parameter \"\\S+ (\\w+)\" from \"(.*)\"")]
    private static partial Regex BindPattern();
}
