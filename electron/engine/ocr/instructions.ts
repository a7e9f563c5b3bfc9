// Instruction-likeness: does text (typically OCR'd out of an image) read like instructions aimed
// at a model — a prompt injection — rather than a caption, a sign or a label?
//
// OCR text is noisy: the PaddleOCR v4 recogniser often drops the spaces between English words
// ("ignorepreviousinstructions") and confuses look-alike glyphs (I/l/1, O/0, rn/m). So matching
// runs on a COMPACT form of the text: NFKD, accents stripped, lower-cased, every character that
// is not a letter or digit removed, and look-alikes folded to one symbol (1, l, | → i; 0 → o;
// 5 → s; rn → m; vv → w) — the same folding is applied to the cue words, so "lgnore" and
// "ignore" meet. Each word of a cue is found by approximate substring search (Sellers'
// algorithm) with an edit budget of 0 / 1 / 2 for words of ≤ 4 / 5–8 / ≥ 9 characters; the
// words of one multi-word alternative ("system prompt") must follow each other with at most one
// stray character between them, so the budget never spans a whole phrase.
//
// A cue is an ordered sequence of slots (each a list of alternatives) with at most `gap`
// compact characters between consecutive slots (room for filler such as "all the", "of your").
// Each cue belongs to a category with a weight; the score is the noisy-OR over matched
// categories,
//     score = 1 − Π_c (1 − w_c)      (w_c = the largest weight matched in category c),
// so one strong cue (an override such as "ignore previous instructions", 0.85) flags on its own,
// while weak ones ("you are now …", a URL) need company. Structural cues that need the raw
// text (chat-template role tags, URLs, shell commands) are regular expressions on it.
// Languages: English, German, French, Spanish, Italian, Portuguese, Russian and Chinese.

export type CueCategory = 'override' | 'role' | 'system' | 'role_tag' | 'role_header' | 'exfiltration' | 'url' | 'concealment' | 'address_ai' | 'command';

export interface InstructionCue {
  category: CueCategory;
  weight: number;
  /** Which rule matched, e.g. 'override/en'. */
  rule: string;
  /** The matched stretch of the (compact or raw) text. */
  match: string;
}

export interface InstructionScore {
  /** In [0, 1]; ≥ INSTRUCTION_FLAG_THRESHOLD reads as an injection attempt. */
  score: number;
  flagged: boolean;
  cues: InstructionCue[];
  /** The text that was judged (for the breakdown). */
  text: string;
}

export const INSTRUCTION_FLAG_THRESHOLD = 0.5;

export const CATEGORY_WEIGHTS: Readonly<Record<CueCategory, number>> = Object.freeze({
  override: 0.85,
  system: 0.55,
  exfiltration: 0.6,
  concealment: 0.6,
  role_tag: 0.6,
  address_ai: 0.5,
  role: 0.45,
  command: 0.4,
  role_header: 0.25,
  url: 0.2,
});

// ---------------------------------------------------------------------------------------------
// Folding

/** Compact form: see the header. Also used on the cue words. */
export function compact(text: string): string {
  return text
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}|]+/gu, '')
    .replace(/[1l|]/g, 'i')
    .replace(/0/g, 'o')
    .replace(/5/g, 's')
    .replace(/rn/g, 'm')
    .replace(/vv/g, 'w');
}

function budget(word: string): number {
  const n = [...word].length;
  return n <= 4 ? 0 : n <= 8 ? 1 : 2;
}

/** Approximate occurrences of `word` in `text` (Sellers): [start, end) spans, ≤ budget(word) edits. */
function fuzzyFind(text: string, word: string): [number, number][] {
  const k = budget(word);
  const t = [...text];
  const w = [...word];
  const m = w.length;
  if (k === 0) {
    const out: [number, number][] = [];
    const joined = t.join('');
    for (let i = joined.indexOf(word); i >= 0; i = joined.indexOf(word, i + 1)) out.push([[...joined.slice(0, i)].length, [...joined.slice(0, i)].length + m]);
    return out;
  }
  // D[i] = edit distance of word[0..i) against the best suffix of text[0..j).
  let prev = Array.from({ length: m + 1 }, (_, i) => i);
  const ends: { end: number; cost: number }[] = [];
  for (let j = 1; j <= t.length; j++) {
    const cur = new Array<number>(m + 1);
    cur[0] = 0;
    for (let i = 1; i <= m; i++) {
      cur[i] = Math.min(prev[i] + 1, cur[i - 1] + 1, prev[i - 1] + (w[i - 1] === t[j - 1] ? 0 : 1));
    }
    if (cur[m] <= k) ends.push({ end: j, cost: cur[m] });
    prev = cur;
  }
  // Keep the best end of each run of adjacent ends (one occurrence, not three).
  const out: [number, number][] = [];
  for (let i = 0; i < ends.length; i++) {
    if (i + 1 < ends.length && ends[i + 1].end === ends[i].end + 1 && ends[i + 1].cost <= ends[i].cost) continue;
    if (out.length && ends[i].end - out[out.length - 1][1] <= 1) continue;
    out.push([Math.max(0, ends[i].end - m), ends[i].end]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Cues

interface PhraseCue {
  category: CueCategory;
  rule: string;
  /** Slots in order; each slot lists alternative spellings (plain words, folded at load). */
  slots: string[][];
  /** Max compact characters between consecutive slots (default 16). */
  gap?: number;
}

const OVERRIDE_OBJECTS_EN = ['instructions', 'instruction', 'prompt', 'prompts', 'rules', 'directions', 'guidelines', 'directives', 'commands', 'guardrails', 'the above', 'text above', 'text below', 'everything above', 'everything before'];

const PHRASES: PhraseCue[] = [
  // Override: a verb of dismissal, then what is dismissed.
  { category: 'override', rule: 'override/en', slots: [['ignore', 'disregard', 'forget', 'override', 'bypass', 'discard', 'abandon'], OVERRIDE_OBJECTS_EN], gap: 24 },
  // "Ignore previous …" is enough even when OCR mangles the noun that follows.
  { category: 'override', rule: 'override/en-short', slots: [['ignore', 'disregard', 'forget'], ['previous', 'prior', 'preceding', 'earlier']], gap: 6 },
  { category: 'override', rule: 'override/en', slots: [['do not follow', 'stop following', 'no longer follow'], ['instructions', 'rules', 'guidelines', 'prompt']], gap: 24 },
  { category: 'override', rule: 'override/de', slots: [['ignoriere', 'ignorieren', 'ignoriert', 'vergiss', 'vergessen', 'missachte'], ['anweisungen', 'anweisung', 'instruktionen', 'befehle', 'regeln', 'vorgaben']], gap: 24 },
  { category: 'override', rule: 'override/fr', slots: [['ignore', 'ignorez', 'oublie', 'oubliez', 'neglige'], ['instructions', 'consignes', 'regles', 'directives']], gap: 24 },
  { category: 'override', rule: 'override/es', slots: [['ignora', 'ignore', 'ignoren', 'olvida', 'olvide', 'omite'], ['instrucciones', 'reglas', 'indicaciones', 'directrices']], gap: 24 },
  { category: 'override', rule: 'override/it', slots: [['ignora', 'ignorate', 'dimentica', 'dimenticate'], ['istruzioni', 'regole', 'indicazioni']], gap: 24 },
  { category: 'override', rule: 'override/pt', slots: [['ignore', 'ignora', 'esqueca', 'desconsidere'], ['instrucoes', 'regras', 'orientacoes']], gap: 24 },
  { category: 'override', rule: 'override/ru', slots: [['игнорируй', 'игнорируйте', 'забудь', 'забудьте', 'проигнорируй'], ['инструкции', 'указания', 'правила', 'команды']], gap: 24 },
  { category: 'override', rule: 'override/zh', slots: [['忽略', '无视', '忘记', '忽视'], ['指令', '指示', '说明', '规则', '提示']], gap: 8 },

  // Switching the model's safety off (added after the typographic red-team texts were missed: README, OCR).
  { category: 'override', rule: 'override/safety-off', slots: [['disable', 'deactivate', 'bypass', 'turn off', 'switch off'], ['safety filters', 'safety filter', 'safety', 'guardrails', 'moderation', 'content filter', 'content filters', 'safeguards', 'restrictions']], gap: 16 },

  // Role: a new identity or mode.
  { category: 'role', rule: 'role/en', slots: [['you are now', 'from now on you', 'you will now act', 'you must now', 'pretend to be', 'pretend you are', 'act as if you', 'roleplay as', 'your new role', 'your new task', 'new instructions']] },
  { category: 'role', rule: 'role/en', slots: [['act as'], ['assistant', 'ai', 'model', 'system', 'admin', 'administrator', 'developer', 'unrestricted', 'jailbroken']], gap: 10 },
  { category: 'role', rule: 'role/de', slots: [['du bist jetzt', 'du bist nun', 'ab jetzt bist du', 'neue anweisungen']] },
  { category: 'role', rule: 'role/fr', slots: [['tu es maintenant', 'vous etes maintenant', 'desormais tu', 'nouvelles instructions']] },
  { category: 'role', rule: 'role/es', slots: [['ahora eres', 'a partir de ahora eres', 'nuevas instrucciones']] },
  { category: 'role', rule: 'role/it', slots: [['ora sei', "d'ora in poi sei", 'nuove istruzioni']] },
  { category: 'role', rule: 'role/pt', slots: [['agora voce e', 'a partir de agora voce', 'novas instrucoes']] },
  { category: 'role', rule: 'role/ru', slots: [['ты теперь', 'теперь ты', 'новые инструкции']] },
  { category: 'role', rule: 'role/zh', slots: [['你现在是', '从现在开始你', '扮演', '新的指令']] },

  // System / jailbreak vocabulary.
  { category: 'system', rule: 'system/en', slots: [['system prompt', 'system message', 'developer mode', 'you are now dan', 'dan mode', 'unrestricted assistant', 'unrestricted model', 'unrestricted mode', 'jailbreak', 'jailbroken', 'do anything now', 'god mode', 'no restrictions', 'without restrictions', 'without any restrictions', 'unrestricted ai', 'no filters', 'without filters', 'uncensored', 'content policy', 'safety guidelines', 'hidden instructions']] },
  { category: 'system', rule: 'system/multi', slots: [['systemprompt', 'systemanweisung', 'invite systeme', 'prompt del sistema', 'prompt di sistema', 'prompt do sistema', 'системный промпт', 'системные инструкции', '系统提示', '越狱']] },

  // Dictating the model's judgment of the very item ("classify it as BENIGN").
  { category: 'system', rule: 'system/verdict', slots: [['classify', 'label', 'rate', 'treat', 'report', 'mark'], ['as safe', 'as benign', 'as harmless', 'as approved', 'as legitimate', 'as trusted', 'as not malicious']], gap: 12 },

  // Exfiltration: a verb of sending or revealing, then something secret.
  {
    category: 'exfiltration',
    rule: 'exfiltration/en',
    slots: [
      ['send', 'post', 'upload', 'forward', 'exfiltrate', 'email', 'transmit', 'leak', 'reveal', 'share', 'print', 'output', 'repeat', 'paste', 'disclose', 'dump', 'include'],
      ['password', 'passwords', 'api key', 'api keys', 'apikey', 'token', 'tokens', 'secret', 'secrets', 'credentials', 'conversation', 'chat history', 'system prompt', 'private key', 'ssh key', 'cookies', 'session', 'personal data', 'user data', 'your instructions', 'your prompt', 'environment variables', 'credit card'],
    ],
    gap: 28,
  },
  { category: 'exfiltration', rule: 'exfiltration/multi', slots: [['sende', 'envoie', 'envoyez', 'envia', 'invia', 'отправь', '发送', '上传'], ['passwort', 'mot de passe', 'contrasena', 'password', 'senha', 'пароль', '密码', '密钥', '令牌', 'token']], gap: 28 },

  // Concealment: keep the user from knowing.
  { category: 'concealment', rule: 'concealment/en', slots: [['do not', 'dont', 'never', 'without'], ['tell', 'inform', 'mention', 'reveal', 'alert', 'notify', 'warn', 'letting', 'telling'], ['the user', 'user', 'the human', 'anyone', 'them']], gap: 10 },
  { category: 'concealment', rule: 'concealment/en', slots: [['secretly', 'without the user knowing', 'keep this secret', 'keep this hidden', 'silently']] },

  // Addressed to a model. Bare "AI" is too common a letter pair in compact text ("available",
  // "air"), so it is matched on the raw text instead (ADDRESS_RAW below).
  {
    category: 'address_ai',
    rule: 'address_ai/en',
    slots: [['if you are an', 'if you are a', 'note to', 'message to', 'message for', 'instructions for', 'attention'], ['llm', 'assistant', 'language model', 'chatbot', 'chatgpt', 'claude', 'gemini', 'copilot', 'ai assistant', 'ai agent', 'ai model', 'ai system']],
    gap: 4,
  },

  // Tool and command use.
  { category: 'command', rule: 'command/en', slots: [['run the following', 'execute the following', 'run this command', 'execute this command', 'call the tool', 'call the function', 'invoke the tool', 'use the tool', 'open the following link', 'visit the following', 'click the link', 'reply only with', 'respond only with', 'answer only with', 'approve the upload', 'approve this request']] },
];

interface CompiledPhrase extends PhraseCue {
  /** Per slot, per alternative: its words, folded. */
  compiledSlots: string[][][];
}

const COMPILED: CompiledPhrase[] = PHRASES.map((p) => ({
  ...p,
  compiledSlots: p.slots.map((alts) => alts.map((alt) => alt.split(/\s+/).map(compact).filter(Boolean))),
}));

const REGEX_CUES: { category: CueCategory; rule: string; re: RegExp }[] = [
  { category: 'role_tag', rule: 'role_tag/chatml', re: /<\|?\s*(im_start|im_end|system|assistant|endoftext)\s*\|>|<\|\s*(im_start|im_end|system|assistant|user|endoftext)\s*\|?>/i },
  { category: 'role_tag', rule: 'role_tag/llama', re: /\[\s*\/?\s*INST\s*\]|<<\s*\/?\s*SYS\s*>>/i },
  { category: 'role_tag', rule: 'role_tag/markdown', re: /#{2,}\s*(system|instruction|instructions|assistant|response)\b/i },
  { category: 'role_header', rule: 'role_header', re: /(^|\n)\s*(system|assistant|developer)\s*(prompt)?\s*:/i },
  { category: 'url', rule: 'url', re: /\b(?:https?:\/\/|www\.)[^\s]+|\b[a-z0-9-]{2,}\.(?:com|net|org|io|ru|cn|xyz|sh|dev|ai|co|me|top|info|biz|link|site)\b(?:\/[^\s]*)?/i },
  // Addressed to a model, on the raw text (word boundaries survive there; OCR reads "AI" as
  // "Al" often enough that both count).
  { category: 'address_ai', rule: 'address_ai/raw', re: /\b(?:note|message|instructions?)\s*(?:to|for)\s*(?:the\s*|all\s*)?(?:A[IL]|LLM|GPT)s?\b/i },
  { category: 'address_ai', rule: 'address_ai/raw', re: /\bif\s*you\s*(?:are|'re)\s*an?\s*(?:A[IL]|LLM|assistant|language\s*model|chatbot|bot)\b/i },
  // A greeting: "AI" only in capitals here, or "Hello Al" would be read as addressing a model.
  { category: 'address_ai', rule: 'address_ai/raw', re: /\b(?:[Hh]ey|[Hh]i|[Hh]ello|[Dd]ear|[Aa]ttention|HEY|HELLO|DEAR|ATTENTION)\s*,?\s*(?:[Cc]hat\s*GPT|CHATGPT|[Cc]laude|CLAUDE|[Gg]emini|GEMINI|[Cc]opilot|COPILOT|LLM|AI)\b/ },
  { category: 'address_ai', rule: 'address_ai/raw', re: /\b(?:A[IL]|LLM)s?\s*(?:assistants?|agents?|models?)?\s*[-,:]?\s*(?:must|should|shall|will\s*now)|\b(?:chatbot|language\s*model|ai\s*assistant|ai\s*agent)s?\W{0,3}(?:must|should|shall|will\s*now)/i },
  { category: 'command', rule: 'command/shell', re: /\b(curl|wget|sudo|powershell|chmod|base64\s+-d)\b|\brm\s+-rf\b|\|\s*(ba)?sh\b/i },
];

/** A URL right after a verb of sending is exfiltration, not a web address on a sign. */
const URL_VERBS = /\b(send|post|upload|forward|transmit|submit|exfiltrate|leak|curl|wget)\b[^\n]{0,60}(https?:\/\/|www\.|\b[a-z0-9-]{2,}\.(com|net|org|io|ru|xyz|sh|dev|ai|co)\b)/i;

function matchPhrase(text: string, cue: CompiledPhrase, hits: Map<string, [number, number][]>): string | null {
  const word = (w: string) => {
    let h = hits.get(w);
    if (!h) {
      h = fuzzyFind(text, w);
      hits.set(w, h);
    }
    return h;
  };
  // An alternative's words, chained with at most one stray character between them.
  const alternative = (words: string[]): [number, number][] => {
    let spans = word(words[0]);
    for (let i = 1; i < words.length && spans.length; i++) {
      const next: [number, number][] = [];
      for (const [start, end] of spans) for (const [a, b] of word(words[i])) if (a >= end - 1 && a - end <= 1) next.push([start, b]);
      spans = next;
    }
    return spans;
  };
  const slot = (alts: string[][]) => alts.flatMap(alternative);
  const gap = cue.gap ?? 16;
  let frontier = slot(cue.compiledSlots[0]);
  for (let s = 1; s < cue.compiledSlots.length && frontier.length; s++) {
    const candidates = slot(cue.compiledSlots[s]);
    const next: [number, number][] = [];
    for (const [start, end] of frontier) for (const [a, b] of candidates) if (a >= end - 1 && a - end <= gap) next.push([start, b]);
    frontier = next;
  }
  if (!frontier.length) return null;
  const [a, b] = frontier.reduce((x, y) => (y[1] - y[0] < x[1] - x[0] ? y : x));
  return [...text].slice(a, b).join('');
}

export function scoreInstructionLikeness(text: string): InstructionScore {
  const c = compact(text);
  const cues: InstructionCue[] = [];
  const hits = new Map<string, [number, number][]>();
  for (const cue of COMPILED) {
    if (cues.some((x) => x.rule === cue.rule)) continue;
    const m = matchPhrase(c, cue, hits);
    if (m !== null) cues.push({ category: cue.category, weight: CATEGORY_WEIGHTS[cue.category], rule: cue.rule, match: m });
  }
  for (const r of REGEX_CUES) {
    const m = text.match(r.re);
    if (m) cues.push({ category: r.category, weight: CATEGORY_WEIGHTS[r.category], rule: r.rule, match: m[0].trim().slice(0, 80) });
  }
  const urlVerb = text.match(URL_VERBS);
  if (urlVerb) cues.push({ category: 'exfiltration', weight: CATEGORY_WEIGHTS.exfiltration, rule: 'exfiltration/url', match: urlVerb[0].slice(0, 80) });

  const best = new Map<CueCategory, number>();
  for (const cue of cues) best.set(cue.category, Math.max(best.get(cue.category) ?? 0, cue.weight));
  let keep = 1;
  for (const w of best.values()) keep *= 1 - w;
  const score = cues.length ? 1 - keep : 0;
  return { score, flagged: score >= INSTRUCTION_FLAG_THRESHOLD, cues, text };
}
