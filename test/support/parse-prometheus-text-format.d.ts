// The test-only Prometheus text parser ships no types: what the tests use of it.
declare module 'parse-prometheus-text-format' {
  interface Sample {
    value?: string;
    labels?: Record<string, string>;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }
  interface Family {
    name: string;
    help: string;
    type: string;
    metrics: Sample[];
  }
  /** Parses Prometheus text exposition into metric families (throws on malformed input). */
  export default function parsePrometheusTextFormat(text: string): Family[];
}
