/**
 * "Unknown option X (did you mean Y?)": the known option names at a path of
 * an options schema, and the closest of them to a misspelt one.
 */

/** The shape of valibot schemas this walks: wrappers, pipes, unions and objects. */
interface SchemaNode {
  type?: string;
  entries?: Record<string, SchemaNode>;
  wrapped?: SchemaNode;
  pipe?: SchemaNode[];
  options?: SchemaNode[];
}

/** Option names allowed at `path` (the keys above the unknown one) of `schema`. */
export function knownOptionsAt(schema: unknown, path: readonly string[]): string[] {
  let nodes = [schema as SchemaNode];
  for (const key of path) nodes = objectsIn(nodes).flatMap((node) => (node.entries?.[key] ? [node.entries[key]!] : []));
  return [...new Set(objectsIn(nodes).flatMap((node) => Object.keys(node.entries ?? {})))];
}

function objectsIn(nodes: SchemaNode[]): SchemaNode[] {
  const found: SchemaNode[] = [];
  const visit = (node: SchemaNode | undefined, depth: number) => {
    if (!node || depth > 8) return;
    if (node.entries) found.push(node);
    if (node.wrapped) visit(node.wrapped, depth + 1);
    if (node.pipe?.[0]) visit(node.pipe[0], depth + 1);
    for (const option of node.options ?? []) visit(option, depth + 1);
  };
  for (const node of nodes) visit(node, 0);
  return found;
}

/** The known name closest to `unknown`, if one is close enough to be a likely typo. */
export function closestOption(unknown: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(unknown.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(unknown.length / 3)) ? best : undefined;
}

/** Levenshtein distance, one row at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
